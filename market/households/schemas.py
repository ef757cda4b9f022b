"""Request and response shapes of the household registry, member households and reveals.

No input here carries a poor status: it only ever comes from an authority's registry import."""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from market.inputs import Input

PHONE_PATTERN = r"^\+?[0-9][0-9 -]{4,30}$"


class HouseholdRead(BaseModel):
    """A household as anyone may see it: personal data masked."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b9a4c1e-6f0e-4f7b-9d1a-3c5e2f7a8b90",
                    "registry_id": "620421-0001",
                    "registered": True,
                    "county_code": "620421",
                    "village": "东湾镇砂梁村",
                    "head_name": "张**",
                    "phone": "138****5678",
                    "id_number": "**************1234",
                }
            ]
        }
    )

    id: uuid.UUID
    registry_id: str | None = Field(description="The registry's id; null for unregistered.")
    registered: bool = Field(description="Listed in an authority's registry.")
    county_code: str
    village: str | None
    head_name: str = Field(description="Masked: the first character, then one * per character.")
    phone: str | None = Field(description="Masked: 138****5678.")
    id_number: str | None = Field(description="Masked: only the last four characters shown.")


class PoorPeriodRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    valid_from: dt.date
    valid_until: dt.date | None = Field(description="Inclusive; null while still poor.")


class MembershipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    cooperative_id: uuid.UUID
    joined_on: dt.date
    left_on: dt.date | None = Field(description="Last day of membership; null while a member.")


class HouseholdDetail(HouseholdRead):
    """For officials in scope: still masked, with the registry's periods and memberships."""

    poor_today: bool
    poor_periods: list[PoorPeriodRead]
    registry_organisation_id: uuid.UUID | None = Field(
        description="The authority whose import last changed it (null: a platform import)."
    )
    added_by_cooperative_id: uuid.UUID | None
    memberships: list[MembershipRead]


class MemberHouseholdRead(BaseModel):
    """A household's membership in a cooperative; `poor` is the registry's, as of `as_of`."""

    membership_id: uuid.UUID
    cooperative_id: uuid.UUID
    household: HouseholdRead
    joined_on: dt.date
    left_on: dt.date | None
    poor: bool = Field(description="Whether the registry lists the household as poor on as_of.")
    as_of: dt.date


class MemberHouseholdDetail(BaseModel):
    household: HouseholdRead
    poor_today: bool
    memberships: list[MembershipRead]


class MembershipLink(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"registry_id": "620421-0001", "joined_on": "2025-03-01"}]}
    )

    registry_id: str = Field(min_length=1, max_length=40)
    joined_on: dt.date
    left_on: dt.date | None = Field(default=None, description="Last day (inclusive), if known.")

    @field_validator("registry_id", mode="before")
    @classmethod
    def _ascii_digits(cls, value: object) -> object:
        """６２０４２１-０００１ is 620421-0001, as the registry import reads it."""
        return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


class UnregisteredHouseholdCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "head_name": "李秀英",
                    "village": "东湾镇砂梁村",
                    "phone": "13912345678",
                    "joined_on": "2025-03-01",
                }
            ]
        }
    )

    head_name: str = Field(min_length=1, max_length=100)
    village: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN, max_length=32)
    county_code: str | None = Field(
        default=None,
        pattern=r"^[0-9]{6}$",
        description="The household's county; default: the cooperative's, if it is a county.",
    )

    @field_validator("phone", "county_code", mode="before")
    @classmethod
    def _ascii_digits(cls, value: object) -> object:
        """Full-width digits (１３９…) read as the ASCII ones."""
        return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value

    joined_on: dt.date
    left_on: dt.date | None = None


class MembershipEnd(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"left_on": "2025-12-31"}]})

    left_on: dt.date = Field(description="The last day of membership (inclusive).")


class RevealCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "核实2025年第三季度枸杞收购记录"}]}
    )

    reason: str = Field(min_length=2, max_length=1000, description="Why; kept in the log.")


class RevealRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    household_id: uuid.UUID
    user_id: uuid.UUID | None
    organisation_id: uuid.UUID
    reason: str
    revealed_at: dt.datetime


class RevealedHousehold(BaseModel):
    """Unmasked name and phone. The full ID number is never stored: only its last four."""

    id: uuid.UUID
    registry_id: str | None
    county_code: str
    village: str | None
    head_name: str
    phone: str | None
    id_number_last4: str | None
    reveal: RevealRead


class RowError(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line: int = Field(description="Line in the file (the header is line 1).")
    column: str | None
    reason: str


class RegistryImportResult(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    mode: Literal["partial", "all_or_nothing"]
    rows: int = Field(description="Data rows read (blank lines skipped).")
    households: int = Field(description="Distinct registry ids in the file.")
    created: int
    updated: int
    unchanged: int
    refused: int = Field(description="Households not imported because a row of theirs is bad.")
    errors: list[RowError]
