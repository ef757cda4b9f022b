"""The search outbox (one row per change that search must follow, written by triggers in the
changing transaction) and the sync's small persisted state."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, Identity, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base


class SearchOutbox(Base):
    """A listing whose search document must be rebuilt. Rows are claimed with FOR UPDATE SKIP
    LOCKED, deleted once the index has the change, retried later (`available_at`) or parked
    with the reason after a refusal."""

    __tablename__ = "search_outbox"
    __table_args__ = (
        Index(
            "ix_search_outbox_pending",
            "available_at",
            "id",
            postgresql_where=text("parked_at IS NULL"),
        ),
        Index("ix_search_outbox_txid", "txid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    listing_id: Mapped[uuid.UUID]
    txid: Mapped[int] = mapped_column(
        BigInteger,
        server_default=text("txid_current()"),
        doc="The writing transaction, so that it can index its own changes before it commits.",
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    available_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    attempts: Mapped[int] = mapped_column(server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    parked_at: Mapped[dt.datetime | None]


class SearchState(Base):
    """Small facts the sync keeps between runs: the reindex in progress, the last sweep."""

    __tablename__ = "search_state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
