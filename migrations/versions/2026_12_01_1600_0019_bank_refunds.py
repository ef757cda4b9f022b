"""bank refunds: a refund of a bank-transfer payment is sent by the platform's bank, so it
stays pending until a platform user records it sent (who, and the bank's reference of the
transfer), and goes into one batch-transfer file only (when it was exported). The statement
keeps the payer's bank, where the bank's export has the column, so that the money can go
back to the account it came from. Before, such a refund was marked paid at once and nothing
ever sent it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "statement_line", sa.Column("payer_bank", sa.Text(), server_default="", nullable=False)
    )
    op.add_column("refund", sa.Column("sent_by_id", sa.Uuid(), nullable=True))
    op.add_column("refund", sa.Column("bank_reference", sa.String(length=64), nullable=True))
    op.add_column("refund", sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        "fk_refund_sent_by_id_user_account", "refund", "user_account", ["sent_by_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint("fk_refund_sent_by_id_user_account", "refund", type_="foreignkey")
    op.drop_column("refund", "exported_at")
    op.drop_column("refund", "bank_reference")
    op.drop_column("refund", "sent_by_id")
    op.drop_column("statement_line", "payer_bank")
