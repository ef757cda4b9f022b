"""search listing: the PostgreSQL search backend's denormalised listing documents (a tsvector of
the shared Chinese analysis with a GIN index, filter and sort columns) and its vocabulary of
ASCII terms with a trigram index for typo tolerance

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_listing",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("document", postgresql.JSONB(), nullable=False),
        sa.Column("terms", postgresql.TSVECTOR(), nullable=False),
        sa.Column("title_zh", sa.Text(), nullable=False),
        sa.Column("category_code", sa.Text(), nullable=False),
        sa.Column("province_code", sa.Text(), nullable=False),
        sa.Column("city_code", sa.Text(), nullable=False),
        sa.Column("county_code", sa.Text(), nullable=False),
        sa.Column("is_poverty_county", sa.Boolean(), nullable=False),
        sa.Column("certifications", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("storage_class", sa.Text(), nullable=False),
        sa.Column("sale_mode", sa.Text(), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("quantity_available", sa.BigInteger(), nullable=False),
        sa.Column("poor_share_bp", sa.Integer(), nullable=True),
        sa.Column("latitude", sa.Double(), nullable=False),
        sa.Column("longitude", sa.Double(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_listing")),
    )
    op.create_index(
        op.f("ix_search_listing_terms"), "search_listing", ["terms"], postgresql_using="gin"
    )
    op.create_index(
        op.f("ix_search_listing_certifications"),
        "search_listing",
        ["certifications"],
        postgresql_using="gin",
    )
    for column in (
        "published_at",
        "unit_price_fen",
        "poor_share_bp",
        "category_code",
        "province_code",
        "city_code",
        "county_code",
    ):
        op.create_index(op.f(f"ix_search_listing_{column}"), "search_listing", [column])
    op.create_table(
        "search_vocabulary",
        sa.Column("term", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("term", name=op.f("pk_search_vocabulary")),
    )
    op.create_index(
        op.f("ix_search_vocabulary_term"),
        "search_vocabulary",
        ["term"],
        postgresql_using="gin",
        postgresql_ops={"term": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_table("search_vocabulary")
    op.drop_table("search_listing")
