"""notification e-mails rendered by the worker: notification.emailed_at and the index of the
notifications still to e-mail (existing notifications had theirs written already); the
`auction_cleared` notification kind (one to the cooperative per clearing)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 16:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the notification kinds of 0012 plus the one added here
KINDS = (
    "order_placed",
    "order_paid",
    "order_expired",
    "order_cancelled",
    "order_shipped",
    "order_delivered",
    "new_bid",
    "bid_countered",
    "bid_accepted",
    "bid_rejected",
    "bid_expired",
    "auction_won",
    "auction_lost",
    "dispute_opened",
    "dispute_answered",
    "dispute_decided",
    "part_declined",
    "payment_failed",
    "refund_paid",
    "settled",
    "payout_scheduled",
    "auction_cleared",
)
OLD_KINDS = 21


def upgrade() -> None:
    op.add_column(
        "notification", sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE notification SET emailed_at = created_at")
    op.create_index(
        "ix_notification_unemailed",
        "notification",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("emailed_at IS NULL"),
    )
    op.drop_constraint(op.f("ck_notification_kind"), "notification", type_="check")
    op.create_check_constraint(op.f("ck_notification_kind"), "notification", f"kind IN {KINDS!r}")


def downgrade() -> None:
    op.execute("DELETE FROM notification WHERE kind = 'auction_cleared'")
    op.drop_constraint(op.f("ck_notification_kind"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_kind"), "notification", f"kind IN {KINDS[:OLD_KINDS]!r}"
    )
    op.drop_index(
        "ix_notification_unemailed",
        table_name="notification",
        postgresql_where=sa.text("emailed_at IS NULL"),
    )
    op.drop_column("notification", "emailed_at")
