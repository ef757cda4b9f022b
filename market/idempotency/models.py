"""Stored outcomes of POSTs made with an Idempotency-Key."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base


class IdempotencyKey(Base):
    __tablename__ = "idempotency_key"

    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[bytes]
    status_code: Mapped[int | None]
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_media_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), index=True)
