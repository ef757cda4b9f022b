"""stored lot shares: per-lot share figures kept between reads, checked against the lot's last
record and a registry version that a trigger bumps on every change of poor-status periods

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:17:48.864230
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BUMP = [
    """
    CREATE FUNCTION bump_registry_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE registry_version SET version = version + 1 WHERE id = 1;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER poor_status_period_bumps_registry_version
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON poor_status_period
        FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_version()
    """,
]


def upgrade() -> None:
    op.create_table(
        "registry_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_registry_version_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_version")),
    )
    op.create_table(
        "lot_share",
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("registry_version", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("value_fen", sa.BigInteger(), nullable=False),
        sa.Column("poor_quantity", sa.BigInteger(), nullable=False),
        sa.Column("poor_value_fen", sa.BigInteger(), nullable=False),
        sa.Column("households", sa.BigInteger(), nullable=False),
        sa.Column("poor_households", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["lot.id"], name=op.f("fk_lot_share_lot_id_lot"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("lot_id", name=op.f("pk_lot_share")),
    )
    op.execute("INSERT INTO registry_version (id, version) VALUES (1, 1)")
    for statement in BUMP:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER poor_status_period_bumps_registry_version ON poor_status_period")
    op.execute("DROP FUNCTION bump_registry_version()")
    op.drop_table("lot_share")
    op.drop_table("registry_version")
