"""Users, bearer tokens and organisation API keys."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ARRAY, CheckConstraint, ForeignKey, Index, String, Text, func, literal_column
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin


class User(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "user_account"
    __table_args__ = (
        Index("uq_user_account_email_lower", func.lower(literal_column("email")), unique=True),
    )

    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(server_default="true")
    last_login_at: Mapped[dt.datetime | None]


class AccessToken(IdMixin, CreatedAtMixin, Base):
    """An opaque bearer token; only its SHA-256 is stored."""

    __tablename__ = "access_token"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(unique=True)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class ApiKey(IdMixin, CreatedAtMixin, Base):
    """An organisation's key for integrations: shown once, SHA-256 at rest, limited by scopes."""

    __tablename__ = "api_key"
    __table_args__ = (CheckConstraint("cardinality(scopes) > 0", name="has_scopes"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[bytes] = mapped_column(unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
