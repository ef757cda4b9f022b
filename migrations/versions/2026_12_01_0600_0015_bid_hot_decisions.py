"""bids: deciding a bid becomes a HOT update (in place on its page, no index entries). The
indexes no longer hold `status`: `(listing_id, status)` becomes `(listing_id, seq)`, and the
expiry sweep's partial index on `status` becomes an index of the stored generated column
`open_until` (expires_at while a negotiation bid stands, else NULL). Every page keeps half
its room free (fillfactor 50) for the decided version of its bids; the table is rewritten
with it while the column is added, under an exclusive lock: bidding waits for the rewrite
(seconds per million bids), so on a large platform run it in a quiet hour.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_UNTIL_SQL = (
    "CASE WHEN kind = 'negotiation' AND status IN ('open', 'countered') THEN expires_at END"
)


def upgrade() -> None:
    op.drop_index("ix_bid_open_expiry", table_name="bid")
    op.drop_index("ix_bid_listing_status", table_name="bid")
    # set first: adding a stored column rewrites the table, and the rewrite honours it
    op.execute("ALTER TABLE bid SET (fillfactor = 50)")
    op.add_column(
        "bid",
        sa.Column(
            "open_until",
            sa.DateTime(timezone=True),
            sa.Computed(OPEN_UNTIL_SQL, persisted=True),
            nullable=True,
        ),
    )
    op.create_index("ix_bid_listing_seq", "bid", ["listing_id", "seq"], unique=False)
    op.create_index(
        "ix_bid_open_until",
        "bid",
        ["open_until"],
        unique=False,
        postgresql_where=sa.text("open_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_bid_open_until", table_name="bid")
    op.drop_index("ix_bid_listing_seq", table_name="bid")
    op.drop_column("bid", "open_until")
    op.execute("ALTER TABLE bid RESET (fillfactor)")
    op.create_index("ix_bid_listing_status", "bid", ["listing_id", "status"], unique=False)
    op.create_index(
        "ix_bid_open_expiry",
        "bid",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('open', 'countered')"),
    )
