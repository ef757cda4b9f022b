"""load the gazetteer of provinces, prefecture cities and counties from the cpca adcode table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

region = sa.table(
    "region",
    sa.column("code", sa.String),
    sa.column("name_zh", sa.String),
    sa.column("short_name_zh", sa.String),
    sa.column("name_pinyin", sa.String),
    sa.column("name_initials", sa.String),
    sa.column("level", sa.String),
    sa.column("parent_code", sa.String),
    sa.column("longitude", sa.Numeric),
    sa.column("latitude", sa.Numeric),
)


def upgrade() -> None:
    # imported here, not at the top: alembic loads every script to find the head, and
    # pypinyin's dictionaries would slow every start of the server
    from market.regions.gazetteer import read_gazetteer

    rows = [row.__dict__ for row in read_gazetteer()]
    # parents sort before children (codes are hierarchical), so the FK holds row by row
    op.bulk_insert(region, rows)


def downgrade() -> None:
    # refused by the foreign keys while organisations still point at regions, as it should be
    op.execute("DELETE FROM region")
