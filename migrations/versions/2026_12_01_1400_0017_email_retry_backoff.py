"""e-mail outbox: an e-mail the transport refused waits before it is tried again
(`next_attempt_at`, growing with each attempt) instead of coming back at the head of every
batch, which spent its ten attempts within seconds during a mail server's greylisting or rate
limit. The unsent e-mails are found by when they are due.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "email_outbox",
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.drop_index("ix_email_outbox_unsent", table_name="email_outbox")
    op.create_index(
        "ix_email_outbox_due",
        "email_outbox",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_email_outbox_due", table_name="email_outbox")
    op.create_index(
        "ix_email_outbox_unsent",
        "email_outbox",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.drop_column("email_outbox", "next_attempt_at")
