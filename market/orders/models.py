"""Orders: what a buyer owes and receives, split into one fulfilment per cooperative.

Lines carry what was true at sale time (price, the lot and its poor-household share), so that
later audits and refunds see the sale as it was. A line is a listing line today; gift-package
lines (campaigns) will be lines of another `kind` with their own allocation snapshot."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

ORDER_STATUSES = ("pending_payment", "paid", "completed", "cancelled", "expired", "disputed")
FULFILMENT_STATUSES = ("pending", "packed", "shipped", "delivered", "cancelled")
ORDER_SOURCES = ("direct", "bid", "auction")
DISPUTE_REASONS = ("quality", "quantity", "not_delivered", "not_as_described")
DISPUTE_STATUSES = ("open", "answered", "decided")
DISPUTE_DECISIONS = ("reject", "partial_refund", "full_refund")
LINE_KINDS = ("listing",)


class Order(IdMixin, CreatedAtMixin, Base):
    """Totals in fen: total = goods + logistics + platform fee (CHECK)."""

    __tablename__ = "order"
    __table_args__ = (
        CheckConstraint(f"status IN {ORDER_STATUSES!r}", name="status"),
        CheckConstraint(f"source IN {ORDER_SOURCES!r}", name="source"),
        CheckConstraint("goods_fen > 0", name="goods_positive"),
        CheckConstraint("logistics_fen >= 0 AND fee_fen >= 0", name="charges_not_negative"),
        CheckConstraint("total_fen = goods_fen + logistics_fen + fee_fen", name="total_adds_up"),
        Index("ix_order_buyer_created", "buyer_id", "created_at", "id"),
        Index(
            "ix_order_payment_due",
            "payment_due_at",
            postgresql_where=text("status = 'pending_payment'"),
        ),
    )

    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="RESTRICT"))
    placed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    status: Mapped[str] = mapped_column(String(16), server_default="pending_payment")
    source: Mapped[str] = mapped_column(String(8), server_default="direct")
    currency: Mapped[str] = mapped_column(String(3), server_default="CNY")
    goods_fen: Mapped[int] = mapped_column(BigInteger)
    logistics_fen: Mapped[int] = mapped_column(BigInteger)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    fee_bps: Mapped[int] = mapped_column(doc="The platform fee rate when the order was placed.")
    destination_code: Mapped[str] = mapped_column(ForeignKey("region.code"))
    address: Mapped[str] = mapped_column(String(300))
    contact_name: Mapped[str] = mapped_column(String(60))
    contact_phone: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    payment_due_at: Mapped[dt.datetime]
    paid_at: Mapped[dt.datetime | None]
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    cancelled_at: Mapped[dt.datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class Fulfilment(IdMixin, CreatedAtMixin, Base):
    """One cooperative's part of an order: its lines, its freight, its shipments."""

    __tablename__ = "fulfilment"
    __table_args__ = (
        CheckConstraint(f"status IN {FULFILMENT_STATUSES!r}", name="status"),
        CheckConstraint("goods_fen > 0 AND logistics_fen >= 0", name="amounts"),
        Index("ix_fulfilment_cooperative_created", "cooperative_id", "created_at", "id"),
        Index("uq_fulfilment_order_cooperative", "order_id", "cooperative_id", unique=True),
        # what an order line's (fulfilment, order) refers to (see OrderLine)
        Index("uq_fulfilment_id_order", "id", "order_id", unique=True),
        Index(
            "ix_fulfilment_auto_confirm",
            "confirm_by",
            postgresql_where=text("status = 'shipped'"),
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.id", ondelete="CASCADE"))
    cooperative_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    goods_fen: Mapped[int] = mapped_column(BigInteger)
    logistics_fen: Mapped[int] = mapped_column(BigInteger)
    transit_days: Mapped[int]
    packed_at: Mapped[dt.datetime | None]
    shipped_at: Mapped[dt.datetime | None]
    confirm_by: Mapped[dt.datetime | None] = mapped_column(
        doc="When a shipped fulfilment is confirmed automatically if the buyer has not."
    )
    delivered_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    decline_reason: Mapped[str | None] = mapped_column(
        Text, doc="Why the cooperative could not supply its part."
    )
    delivery_confirmed_by: Mapped[str | None] = mapped_column(String(8), doc="buyer or auto")


class OrderLine(IdMixin, Base):
    """A quantity of one listing at the price it had for this quantity when ordered."""

    __tablename__ = "order_line"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(map(repr, LINE_KINDS))})", name="kind"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_fen > 0", name="price_positive"),
        CheckConstraint("line_total_fen = quantity * unit_price_fen", name="total_adds_up"),
        Index("ix_order_line_order", "order_id"),
        Index("ix_order_line_listing", "listing_id"),
        # Two keys of two columns each: the line's order is its fulfilment's order, and its lot
        # is its listing's lot (the lot whose share the line freezes), which four single keys
        # did not say; and a line costs two key checks, not four (an auction of thousands of
        # winners writes thousands of lines at once).
        ForeignKeyConstraint(
            ["fulfilment_id", "order_id"],
            ["fulfilment.id", "fulfilment.order_id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["listing_id", "lot_id"], ["listing.id", "listing.lot_id"], ondelete="RESTRICT"
        ),
    )

    order_id: Mapped[uuid.UUID]
    fulfilment_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(10), server_default="listing")
    listing_id: Mapped[uuid.UUID]
    lot_id: Mapped[uuid.UUID]
    title_zh: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(BigInteger, doc="Units of sale.")
    unit_size: Mapped[int] = mapped_column(BigInteger, doc="Base units per unit of sale.")
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    line_total_fen: Mapped[int] = mapped_column(BigInteger)
    poor_share_bp: Mapped[int | None] = mapped_column(
        doc="The lot's poor-household share when the order was placed (frozen)."
    )


class Shipment(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "shipment"
    __table_args__ = (Index("ix_shipment_fulfilment", "fulfilment_id"),)

    fulfilment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("fulfilment.id", ondelete="CASCADE")
    )
    carrier: Mapped[str] = mapped_column(String(60))
    tracking_number: Mapped[str] = mapped_column(String(60))
    cold_chain: Mapped[bool] = mapped_column(Boolean, server_default="false")
    shipped_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))


class ShipmentEvent(IdMixin, Base):
    """A tracking event reported by the cooperative or the carrier."""

    __tablename__ = "shipment_event"
    __table_args__ = (Index("ix_shipment_event_shipment", "shipment_id", "happened_at"),)

    shipment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shipment.id", ondelete="CASCADE"))
    happened_at: Mapped[dt.datetime]
    location: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(300))
    temperature_c10: Mapped[int | None] = mapped_column(
        doc="Cold-chain temperature in tenths of a degree Celsius, when reported."
    )
    recorded_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class Dispute(IdMixin, CreatedAtMixin, Base):
    """A buyer's complaint about one cooperative's part of an order, the cooperative's answer
    and the platform's decision, all kept. The refund itself is the payments step's."""

    __tablename__ = "dispute"
    __table_args__ = (
        CheckConstraint(f"reason IN {DISPUTE_REASONS!r}", name="reason"),
        CheckConstraint(f"status IN {DISPUTE_STATUSES!r}", name="status"),
        CheckConstraint(f"decision IS NULL OR decision IN {DISPUTE_DECISIONS!r}", name="decision"),
        CheckConstraint("refund_fen IS NULL OR refund_fen >= 0", name="refund_not_negative"),
        Index("ix_dispute_order", "order_id"),
        Index("ix_dispute_open", "created_at", postgresql_where=text("status <> 'decided'")),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.id", ondelete="RESTRICT"))
    fulfilment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("fulfilment.id", ondelete="RESTRICT")
    )
    opened_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    reason: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default="{}", doc="Photo or document references, notes."
    )
    claimed_fen: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), server_default="open")
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    answered_at: Mapped[dt.datetime | None]
    decision: Mapped[str | None] = mapped_column(String(16))
    refund_fen: Mapped[int | None] = mapped_column(BigInteger)
    decision_note: Mapped[str | None] = mapped_column(Text)
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    decided_at: Mapped[dt.datetime | None]
