"""Bids on negotiable and auction listings, the cooperative's counter-offers, and the one
clearing of each auction."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

BID_KINDS = ("negotiation", "auction")
BID_STATUSES = (
    "open",
    "countered",
    "accepted",
    "rejected",
    "withdrawn",
    "expired",
    "won",
    "partially_won",
    "lost",
)
COUNTER_STATUSES = ("open", "accepted", "declined", "expired")
BID_FILLFACTOR = 50  # each bid is written once and decided about once, in place
# when an open or countered negotiation bid lapses (NULL for every other bid)
OPEN_UNTIL_SQL = (
    "CASE WHEN kind = 'negotiation' AND status IN ('open', 'countered') THEN expires_at END"
)


class Bid(IdMixin, CreatedAtMixin, Base):
    """A buyer's offer: unit price, quantity, whether a partial fill is acceptable, where it
    goes. Sealed on auctions: only its bidder and, after the close, the cooperative see it."""

    __tablename__ = "bid"
    __table_args__ = (
        CheckConstraint(f"kind IN {BID_KINDS!r}", name="kind"),
        CheckConstraint(f"status IN {BID_STATUSES!r}", name="status"),
        CheckConstraint("unit_price_fen > 0", name="price_positive"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "filled_quantity IS NULL OR (filled_quantity >= 0 AND filled_quantity <= quantity)",
            name="filled_within_bid",
        ),
        # No index holds a column that deciding a bid changes (status, filled_quantity,
        # order_id, outcome_reason, decided_at, updated_at), and every page keeps half its
        # room free: so deciding a bid is a HOT update, written on its own page with no
        # index entry, 2.5 times cheaper than before; an auction's clearing decides
        # thousands at once. The sweep of expiring bids reads `open_until`, which deciding
        # an auction bid leaves NULL (a test checks both).
        Index("ix_bid_listing_seq", "listing_id", "seq"),
        Index("ix_bid_buyer_created", "buyer_id", "created_at", "id"),
        Index("ix_bid_open_until", "open_until", postgresql_where=text("open_until IS NOT NULL")),
        {"postgresql_with": {"fillfactor": BID_FILLFACTOR}},
    )

    seq: Mapped[int] = mapped_column(
        BigInteger, Identity(always=True), unique=True, doc="Placing order: ties go to earlier."
    )
    kind: Mapped[str] = mapped_column(String(12))
    listing_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("listing.id", ondelete="RESTRICT"))
    cooperative_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="RESTRICT"))
    placed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    status: Mapped[str] = mapped_column(String(14), server_default="open")
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    partial_ok: Mapped[bool]
    expires_at: Mapped[dt.datetime | None] = mapped_column(doc="Negotiation bids only.")
    open_until: Mapped[dt.datetime | None] = mapped_column(
        Computed(OPEN_UNTIL_SQL, persisted=True),
        doc="expires_at while a negotiation bid stands (open or countered), else NULL: "
        "what the expiry sweep reads.",
    )
    destination_code: Mapped[str] = mapped_column(ForeignKey("region.code"))
    address: Mapped[str] = mapped_column(String(300))
    contact_name: Mapped[str] = mapped_column(String(60))
    contact_phone: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    filled_quantity: Mapped[int | None] = mapped_column(BigInteger)
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("order.id"))
    decided_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class CounterOffer(IdMixin, CreatedAtMixin, Base):
    """The cooperative's answer with other terms; the buyer may accept it until it expires."""

    __tablename__ = "counter_offer"
    __table_args__ = (
        CheckConstraint(f"status IN {COUNTER_STATUSES!r}", name="status"),
        CheckConstraint("unit_price_fen > 0 AND quantity > 0", name="terms_positive"),
        Index("ix_counter_offer_bid", "bid_id", "created_at"),
    )

    bid_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bid.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10), server_default="open")
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[dt.datetime]
    message: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))


class AuctionClearing(Base):
    """The one clearing of an auction listing (the primary key makes a second impossible)."""

    __tablename__ = "auction_clearing"

    listing_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("listing.id", ondelete="RESTRICT"), primary_key=True
    )
    cleared_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    quantity_offered: Mapped[int] = mapped_column(BigInteger)
    quantity_allocated: Mapped[int] = mapped_column(BigInteger)
    revenue_fen: Mapped[int] = mapped_column(BigInteger)
    bids: Mapped[int]
    winners: Mapped[int]
