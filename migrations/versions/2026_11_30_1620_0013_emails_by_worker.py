"""notification e-mails rendered by the worker: notification.emailed_at and the index of the
notifications still to e-mail (existing notifications had theirs written already)

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


def downgrade() -> None:
    op.drop_index(
        "ix_notification_unemailed",
        table_name="notification",
        postgresql_where=sa.text("emailed_at IS NULL"),
    )
    op.drop_column("notification", "emailed_at")
