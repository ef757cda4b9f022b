"""Organisations, memberships with roles, invitations, and the regions an authority may audit."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

ORGANISATION_KINDS = ("cooperative", "buyer", "organiser", "authority", "platform")
VERIFICATION_STATUSES = ("pending", "verified", "rejected")
ROLES = ("owner", "staff", "viewer")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Organisation(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "organisation"
    __table_args__ = (
        CheckConstraint(_in("kind", ORGANISATION_KINDS), name="kind"),
        CheckConstraint(_in("verification_status", VERIFICATION_STATUSES), name="verification"),
        CheckConstraint(
            "(verification_status = 'rejected') = (rejection_reason IS NOT NULL)",
            name="rejection_has_reason",
        ),
        Index("ix_organisation_created", "created_at", "id"),
    )

    kind: Mapped[str] = mapped_column(String(16), index=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    unified_social_credit_code: Mapped[str | None] = mapped_column(String(18))
    description: Mapped[str | None] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    verification_status: Mapped[str] = mapped_column(String(16), server_default="pending")
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[dt.datetime | None]
    verified_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class Membership(CreatedAtMixin, Base):
    __tablename__ = "membership"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))


class Invitation(IdMixin, CreatedAtMixin, Base):
    """An invitation to join an organisation by e-mail; the token is shown once."""

    __tablename__ = "invitation"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[bytes] = mapped_column(unique=True)
    invited_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class AuthorityRegion(CreatedAtMixin, Base):
    """A region (province, city or county) that an authority organisation may audit."""

    __tablename__ = "authority_region"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True
    )
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), primary_key=True)
    granted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
