"""Listings with price tiers, and the stock ledger through which availability changes."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    FetchedValue,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

SALE_MODES = ("fixed", "negotiable", "auction")
STATUSES = ("draft", "active", "paused", "sold_out", "closed")
DELIVERY_TERMS = ("pickup", "delivered")
MOVEMENT_KINDS = ("list", "reserve", "release", "sell", "adjust", "close")


class Listing(IdMixin, CreatedAtMixin, Base):
    """An offer to sell from a lot. Quantities are in units of sale (the product's unit);
    `unit_size` is the number of base units (grams or pieces) in one unit of sale.

    Always: listed = available + reserved + sold, none negative (CHECKs below)."""

    __tablename__ = "listing"
    __table_args__ = (
        CheckConstraint(f"sale_mode IN {SALE_MODES!r}", name="sale_mode"),
        CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        CheckConstraint(f"delivery_terms IN {DELIVERY_TERMS!r}", name="delivery_terms"),
        CheckConstraint("quantity_available >= 0", name="available_not_negative"),
        CheckConstraint("quantity_reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("quantity_sold >= 0", name="sold_not_negative"),
        CheckConstraint(
            "quantity_listed = quantity_available + quantity_reserved + quantity_sold",
            name="stock_balances",
        ),
        CheckConstraint("unit_price_fen > 0", name="price_positive"),
        CheckConstraint("unit_size > 0", name="unit_size_positive"),
        CheckConstraint("min_order_quantity >= 1", name="min_order_positive"),
        CheckConstraint("valid_until IS NULL OR valid_until > valid_from", name="window"),
        CheckConstraint(
            "(sale_mode = 'auction') = (auction_closes_at IS NOT NULL)", name="auction_close"
        ),
        CheckConstraint(
            "sale_mode = 'auction' OR reserve_price_fen IS NULL", name="reserve_only_auction"
        ),
        Index("ix_listing_status_published", "status", "published_at"),
        Index("ix_listing_cooperative_created", "cooperative_id", "created_at", "id"),
        # what an order line's (listing, lot) refers to: the line's lot is its listing's lot
        Index("uq_listing_id_lot", "id", "lot_id", unique=True),
    )

    cooperative_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    lot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lot.id", ondelete="RESTRICT"), index=True)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("product.id", ondelete="RESTRICT"))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    sale_mode: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(10), server_default="draft")
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    unit_size: Mapped[int] = mapped_column(BigInteger)
    min_order_quantity: Mapped[int] = mapped_column(BigInteger, server_default="1")
    quantity_listed: Mapped[int] = mapped_column(BigInteger)
    quantity_available: Mapped[int] = mapped_column(BigInteger)
    quantity_reserved: Mapped[int] = mapped_column(BigInteger, server_default="0")
    quantity_sold: Mapped[int] = mapped_column(BigInteger, server_default="0")
    delivery_terms: Mapped[str] = mapped_column(String(10))
    pickup_hub: Mapped[str | None] = mapped_column(String(200))
    valid_from: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    valid_until: Mapped[dt.datetime | None]
    auction_closes_at: Mapped[dt.datetime | None]
    reserve_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    auction_extensions: Mapped[int] = mapped_column(
        server_default="0", doc="Times a late bid extended the close (anti-sniping)."
    )
    certification_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid()), server_default="{}", doc="Certificates this listing claims."
    )
    published_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    version: Mapped[int] = mapped_column(
        BigInteger,
        server_default="1",
        server_onupdate=FetchedValue(),
        doc="Grows by one with every UPDATE (a trigger): the search index never takes an older "
        "version over a newer one.",
    )


class ListingPriceTier(Base):
    """From `min_quantity` units of sale upwards, the unit price is `unit_price_fen`."""

    __tablename__ = "listing_price_tier"
    __table_args__ = (
        CheckConstraint("min_quantity >= 2", name="min_quantity"),
        CheckConstraint("unit_price_fen > 0", name="price_positive"),
    )

    listing_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("listing.id", ondelete="CASCADE"), primary_key=True
    )
    min_quantity: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)


class StockMovement(Base):
    """One change of a listing's stock: every change of availability is written here."""

    __tablename__ = "stock_movement"
    __table_args__ = (
        CheckConstraint(f"kind IN {MOVEMENT_KINDS!r}", name="kind"),
        CheckConstraint("quantity <> 0", name="not_zero"),
        Index("ix_stock_movement_listing", "listing_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    listing_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("listing.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[int] = mapped_column(
        BigInteger, doc="Units of sale; the sign says which way availability moved."
    )
    available_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(200))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
