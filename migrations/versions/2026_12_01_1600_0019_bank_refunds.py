"""bank refunds: a refund of a bank-transfer payment is sent by the platform's bank, so it
stays pending until a platform user records it sent (who, and the bank's reference of the
transfer), and goes into one batch-transfer file only (when it was exported). A transfer the
payer's bank sends back is recorded (the refund waits again, to the account the platform
user then gives), with a notification kind to tell the buyer. The statement
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

# the notification kinds before this revision
KINDS = (
    "order_placed", "order_paid", "order_expired", "order_cancelled", "order_shipped",
    "order_delivered", "new_bid", "bid_countered", "bid_accepted", "bid_rejected",
    "bid_expired", "auction_won", "auction_lost", "dispute_opened", "dispute_answered",
    "dispute_decided", "part_declined", "payment_failed", "refund_paid", "settled",
    "payout_scheduled", "auction_cleared",
)  # fmt: skip


def upgrade() -> None:
    op.add_column(
        "statement_line", sa.Column("payer_bank", sa.Text(), server_default="", nullable=False)
    )
    op.add_column("refund", sa.Column("sent_by_id", sa.Uuid(), nullable=True))
    op.add_column("refund", sa.Column("bank_reference", sa.String(length=64), nullable=True))
    op.add_column("refund", sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True))
    for column in ("payee_name", "payee_account", "payee_bank"):
        op.add_column("refund", sa.Column(column, sa.Text(), nullable=True))
    op.drop_constraint("ck_notification_kind", "notification", type_="check")
    op.create_check_constraint(
        "ck_notification_kind", "notification", f"kind IN {(*KINDS, 'refund_bounced')!r}"
    )
    op.create_foreign_key(
        "fk_refund_sent_by_id_user_account", "refund", "user_account", ["sent_by_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint("fk_refund_sent_by_id_user_account", "refund", type_="foreignkey")
    op.execute("DELETE FROM notification WHERE kind = 'refund_bounced'")
    op.drop_constraint("ck_notification_kind", "notification", type_="check")
    op.create_check_constraint("ck_notification_kind", "notification", f"kind IN {KINDS!r}")
    for column in ("payee_name", "payee_account", "payee_bank"):
        op.drop_column("refund", column)
    op.drop_column("refund", "exported_at")
    op.drop_column("refund", "bank_reference")
    op.drop_column("refund", "sent_by_id")
    op.drop_column("statement_line", "payer_bank")
