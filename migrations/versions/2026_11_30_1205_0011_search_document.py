"""search document: the indexed document moves out of search_listing into its own table, so
that search rows stay under PostgreSQL's TOAST threshold and the tsvector is read inline

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 12:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_document",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("document", postgresql.JSONB(), nullable=False),
        sa.ForeignKeyConstraint(
            ["id"],
            ["search_listing.id"],
            name=op.f("fk_search_document_id_search_listing"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_document")),
    )
    op.execute("INSERT INTO search_document (id, document) SELECT id, document FROM search_listing")
    # rows already toasted come back inline when next written (`market search reindex`)
    op.drop_column("search_listing", "document")


def downgrade() -> None:
    op.add_column(
        "search_listing",
        sa.Column("document", postgresql.JSONB(), nullable=True),
    )
    op.execute(
        "UPDATE search_listing s SET document = d.document FROM search_document d WHERE d.id = s.id"
    )
    op.alter_column("search_listing", "document", nullable=False)
    op.drop_table("search_document")
