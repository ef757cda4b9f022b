"""Registered households, their poor-status periods, cooperative membership, and the log of
every reveal of unmasked personal data."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin


class Household(IdMixin, CreatedAtMixin, Base):
    """A farm household. Registered ones come from an authority's registry (`registry_id`);
    unregistered ones are added by a cooperative and are never poor."""

    __tablename__ = "household"
    __table_args__ = (
        CheckConstraint(
            "(registry_id IS NULL) = (added_by_cooperative_id IS NOT NULL)",
            name="registered_or_added",
        ),
        CheckConstraint("id_number_last4 ~ '^[0-9Xx]{4}$'", name="last4_format"),
    )

    registry_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    county_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    head_name: Mapped[str] = mapped_column(String(100))
    # keyed hash (HMAC-SHA256 with the server's secret) of the ID-card number, never the number
    id_number_hash: Mapped[bytes | None] = mapped_column(unique=True)
    id_number_last4: Mapped[str | None] = mapped_column(String(4))
    phone: Mapped[str | None] = mapped_column(String(32))
    village: Mapped[str | None] = mapped_column(String(100))
    registry_organisation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    added_by_cooperative_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT"), index=True
    )
    content_hash: Mapped[bytes | None] = mapped_column(
        doc="Hash of the last imported row, so that re-importing it changes nothing."
    )
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class PoorStatusPeriod(IdMixin, Base):
    """A period (both ends inclusive) in which the registry lists the household as poor."""

    __tablename__ = "poor_status_period"
    __table_args__ = (
        CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="ordered"),
        ExcludeConstraint(
            ("household_id", "="),
            (text("daterange(valid_from, valid_until, '[]')"), "&&"),
            name="ex_poor_status_period_no_overlap",
            using="gist",
        ),
    )

    household_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("household.id", ondelete="CASCADE"), index=True
    )
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)


class CooperativeMember(CreatedAtMixin, Base):
    """A household supplying a cooperative from `joined_on` until `left_on` (inclusive)."""

    __tablename__ = "cooperative_member"
    __table_args__ = (
        CheckConstraint("left_on IS NULL OR left_on >= joined_on", name="ordered"),
        ExcludeConstraint(
            ("cooperative_id", "="),
            ("household_id", "="),
            (text("daterange(joined_on, left_on, '[]')"), "&&"),
            name="ex_cooperative_member_no_overlap",
            using="gist",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    cooperative_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    household_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("household.id", ondelete="RESTRICT"), index=True
    )
    joined_on: Mapped[dt.date] = mapped_column(Date)
    left_on: Mapped[dt.date | None] = mapped_column(Date)


class PersonalDataReveal(IdMixin, Base):
    """Who saw a household's unmasked personal data, when, and why. Append-only."""

    __tablename__ = "personal_data_reveal"
    __table_args__ = (Index("ix_personal_data_reveal_household", "household_id", "revealed_at"),)

    household_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("household.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    reason: Mapped[str] = mapped_column(Text)
    revealed_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class RegistryVersion(Base):
    """A counter that a trigger bumps whenever any poor-status period changes, so that shares
    stored before the change are known to be out of date."""

    __tablename__ = "registry_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
