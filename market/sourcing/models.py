"""Lots, sourcing records (append-only, hash-chained) and the chain head that orders appends."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

RECORD_KINDS = ("purchase", "reversal")


class Lot(IdMixin, CreatedAtMixin, Base):
    """A quantity of one product procured or produced by one cooperative; the unit of
    traceability, found publicly by its trace code."""

    __tablename__ = "lot"
    __table_args__ = (Index("ix_lot_cooperative_created", "cooperative_id", "created_at", "id"),)

    cooperative_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("product.id", ondelete="RESTRICT"), index=True
    )
    trace_code: Mapped[str] = mapped_column(String(24), unique=True)
    harvest_date: Mapped[dt.date | None] = mapped_column(Date)
    production_date: Mapped[dt.date | None] = mapped_column(Date)
    grade: Mapped[str | None] = mapped_column(String(40))
    storage_place: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)


class SourcingRecord(Base):
    """One line of the sourcing ledger. Never updated or deleted (a trigger refuses it);
    a correction is a `reversal` of an earlier purchase, optionally followed by a new one.

    `hash` = SHA-256(prev_hash || canonical content), in `seq` order over the whole ledger.
    Quantities are in the product's base unit; `amount_fen` = round-half-even(quantity ×
    unit_price_fen ÷ pricing unit) is fixed when the record is written.
    """

    __tablename__ = "sourcing_record"
    __table_args__ = (
        CheckConstraint(f"kind IN {RECORD_KINDS!r}", name="kind"),
        CheckConstraint(
            "(kind = 'purchase' AND quantity > 0 AND amount_fen >= 0 AND reverses_seq IS NULL)"
            " OR (kind = 'reversal' AND quantity < 0 AND amount_fen <= 0"
            " AND reverses_seq IS NOT NULL)",
            name="signs",
        ),
        CheckConstraint("unit_price_fen >= 0", name="price_not_negative"),
        CheckConstraint("octet_length(hash) = 32 AND octet_length(prev_hash) = 32", name="hashes"),
        Index("ix_sourcing_record_lot", "lot_id", "seq"),
        Index("ix_sourcing_record_household", "household_id"),
        Index("uq_sourcing_record_reverses", "reverses_seq", unique=True),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, server_default=text("gen_random_uuid()"))
    lot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lot.id", ondelete="RESTRICT"))
    cooperative_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    household_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("household.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(10))
    reverses_seq: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("sourcing_record.seq", ondelete="RESTRICT")
    )
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    purchase_date: Mapped[dt.date] = mapped_column(Date)
    evidence_ref: Mapped[str | None] = mapped_column(String(100))
    evidence_url: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)


class SourcingChainHead(Base):
    """The single row that appends lock, so that concurrent appends form one linear chain."""

    __tablename__ = "sourcing_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary)


class StoredLotShare(Base):
    """A lot's share figures as last computed, valid while the lot's last record is still
    `last_seq` and the registry is still at `registry_version` (checked on every read)."""

    __tablename__ = "lot_share"

    lot_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("lot.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(BigInteger)
    registry_version: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    value_fen: Mapped[int] = mapped_column(BigInteger)
    poor_quantity: Mapped[int] = mapped_column(BigInteger)
    poor_value_fen: Mapped[int] = mapped_column(BigInteger)
    households: Mapped[int] = mapped_column(BigInteger)
    poor_households: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
