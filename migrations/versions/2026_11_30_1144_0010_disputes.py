"""disputes: a buyer's complaint about one fulfilment, the cooperative's answer and the
platform's decision with the refund amount, all kept

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 11:44:24.529530
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispute",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("fulfilment_id", sa.Uuid(), nullable=False),
        sa.Column("opened_by_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("evidence", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("claimed_fen", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by_id", sa.Uuid(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("refund_fen", sa.BigInteger(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("decided_by_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('reject', 'partial_refund', 'full_refund')",
            name=op.f("ck_dispute_decision"),
        ),
        sa.CheckConstraint(
            "reason IN ('quality', 'quantity', 'not_delivered', 'not_as_described')",
            name=op.f("ck_dispute_reason"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'answered', 'decided')", name=op.f("ck_dispute_status")
        ),
        sa.CheckConstraint(
            "refund_fen IS NULL OR refund_fen >= 0", name=op.f("ck_dispute_refund_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["answered_by_id"],
            ["user_account.id"],
            name=op.f("fk_dispute_answered_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["user_account.id"],
            name=op.f("fk_dispute_decided_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["fulfilment_id"],
            ["fulfilment.id"],
            name=op.f("fk_dispute_fulfilment_id_fulfilment"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["opened_by_id"], ["user_account.id"], name=op.f("fk_dispute_opened_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["order.id"], name=op.f("fk_dispute_order_id_order"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute")),
    )
    op.create_index(
        "ix_dispute_open",
        "dispute",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status <> 'decided'"),
    )
    op.create_index("ix_dispute_order", "dispute", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_dispute_order", table_name="dispute")
    op.drop_index(
        "ix_dispute_open", table_name="dispute", postgresql_where=sa.text("status <> 'decided'")
    )
    op.drop_table("dispute")
