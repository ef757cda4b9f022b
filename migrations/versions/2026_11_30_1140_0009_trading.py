"""trading: bids (negotiation and sealed auction bids, with a placing sequence), counter-offers,
the one clearing per auction, and the count of anti-sniping extensions on listings

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 11:40:10.699193
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auction_clearing",
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column(
            "cleared_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("quantity_offered", sa.BigInteger(), nullable=False),
        sa.Column("quantity_allocated", sa.BigInteger(), nullable=False),
        sa.Column("revenue_fen", sa.BigInteger(), nullable=False),
        sa.Column("bids", sa.Integer(), nullable=False),
        sa.Column("winners", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.id"],
            name=op.f("fk_auction_clearing_listing_id_listing"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("listing_id", name=op.f("pk_auction_clearing")),
    )
    op.create_table(
        "bid",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("placed_by_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=14), server_default="open", nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("partial_ok", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destination_code", sa.String(length=6), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("contact_name", sa.String(length=60), nullable=False),
        sa.Column("contact_phone", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("filled_quantity", sa.BigInteger(), nullable=True),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('negotiation', 'auction')", name=op.f("ck_bid_kind")),
        sa.CheckConstraint(
            "status IN ('open', 'countered', 'accepted', 'rejected', 'withdrawn', 'expired', 'won', 'partially_won', 'lost')",  # noqa: E501
            name=op.f("ck_bid_status"),
        ),
        sa.CheckConstraint(
            "filled_quantity IS NULL OR (filled_quantity >= 0 AND filled_quantity <= quantity)",
            name=op.f("ck_bid_filled_within_bid"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_bid_quantity_positive")),
        sa.CheckConstraint("unit_price_fen > 0", name=op.f("ck_bid_price_positive")),
        sa.ForeignKeyConstraint(
            ["buyer_id"],
            ["organisation.id"],
            name=op.f("fk_bid_buyer_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_bid_cooperative_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["destination_code"], ["region.code"], name=op.f("fk_bid_destination_code_region")
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.id"],
            name=op.f("fk_bid_listing_id_listing"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(["order_id"], ["order.id"], name=op.f("fk_bid_order_id_order")),
        sa.ForeignKeyConstraint(
            ["placed_by_id"], ["user_account.id"], name=op.f("fk_bid_placed_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bid")),
        sa.UniqueConstraint("seq", name=op.f("uq_bid_seq")),
    )
    op.create_index("ix_bid_buyer_created", "bid", ["buyer_id", "created_at", "id"], unique=False)
    op.create_index("ix_bid_listing_status", "bid", ["listing_id", "status"], unique=False)
    op.create_index(
        "ix_bid_open_expiry",
        "bid",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('open', 'countered')"),
    )
    op.create_table(
        "counter_offer",
        sa.Column("bid_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('open', 'accepted', 'declined', 'expired')",
            name=op.f("ck_counter_offer_status"),
        ),
        sa.CheckConstraint(
            "unit_price_fen > 0 AND quantity > 0", name=op.f("ck_counter_offer_terms_positive")
        ),
        sa.ForeignKeyConstraint(
            ["bid_id"], ["bid.id"], name=op.f("fk_counter_offer_bid_id_bid"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_counter_offer_created_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counter_offer")),
    )
    op.create_index("ix_counter_offer_bid", "counter_offer", ["bid_id", "created_at"], unique=False)
    op.add_column(
        "listing", sa.Column("auction_extensions", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("listing", "auction_extensions")
    op.drop_index("ix_counter_offer_bid", table_name="counter_offer")
    op.drop_table("counter_offer")
    op.drop_index(
        "ix_bid_open_expiry",
        table_name="bid",
        postgresql_where=sa.text("status IN ('open', 'countered')"),
    )
    op.drop_index("ix_bid_listing_status", table_name="bid")
    op.drop_index("ix_bid_buyer_created", table_name="bid")
    op.drop_table("bid")
    op.drop_table("auction_clearing")
