"""refunds: a kind for money taken by a payment the buyer had replaced. Choosing another way
to pay cancels the pending payment; when the provider was still processing it (a wallet
payment under way), our record is cancelled but the money can still arrive. It then went
into escrow and stayed there: the buyer paid twice, or paid for an order that expired. The
worker now refunds it whole (`replaced_payment`).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 14:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = (
    "'dispute', 'cancellation', 'declined_part', 'overpayment', 'late_payment', 'manual', "
    "'provider'"
)


def upgrade() -> None:
    op.drop_constraint("ck_refund_kind", "refund", type_="check")
    op.create_check_constraint("ck_refund_kind", "refund", f"kind IN ({OLD}, 'replaced_payment')")


def downgrade() -> None:
    op.drop_constraint("ck_refund_kind", "refund", type_="check")
    op.create_check_constraint("ck_refund_kind", "refund", f"kind IN ({OLD})")
