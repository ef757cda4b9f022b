"""Request and response shapes of organisations, members, invitations and audit regions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from market.inputs import Input

OrganisationKind = Literal["cooperative", "buyer", "organiser", "authority", "platform"]
Role = Literal["owner", "staff", "viewer"]
RegionCode = Field(pattern=r"^[0-9]{6}$", description="GB/T 2260 code, e.g. 620421 (靖远县).")


class OrganisationCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "cooperative",
                    "name_zh": "靖远县枸杞种植专业合作社",
                    "name_en": "Jingyuan Wolfberry Growers' Cooperative",
                    "region_code": "620421",
                    "unified_social_credit_code": "93620421MA7XXXXXX1",
                    "contact_phone": "0943-6123456",
                }
            ]
        }
    )

    kind: Literal["cooperative", "buyer", "organiser", "authority"]
    name_zh: str = Field(min_length=2, max_length=200, description="Registered name in Chinese.")
    name_en: str | None = Field(default=None, max_length=200)
    region_code: str = RegionCode
    unified_social_credit_code: str | None = Field(
        default=None, pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"
    )
    description: str | None = Field(default=None, max_length=4000)
    contact_phone: str | None = Field(default=None, max_length=32)


class OrganisationUpdate(Input):
    name_zh: str | None = Field(default=None, min_length=2, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    contact_phone: str | None = Field(default=None, max_length=32)

    @field_validator("name_zh")
    @classmethod
    def _name_cannot_be_cleared(cls, value: str | None) -> str:
        # runs only when the field is sent: leaving it out keeps the name, null is refused
        if value is None:
            raise ValueError("the Chinese name cannot be cleared")
        return value


class OrganisationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: OrganisationKind
    name_zh: str
    name_en: str | None
    region_code: str
    unified_social_credit_code: str | None
    description: str | None
    contact_phone: str | None
    verification_status: Literal["pending", "verified", "rejected"]
    rejection_reason: str | None
    verified_at: dt.datetime | None
    created_at: dt.datetime


class Rejection(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "营业执照照片不清晰，请重新上传。"}]}
    )

    reason: str = Field(min_length=2, max_length=2000, description="Shown to the organisation.")


class MemberAdd(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "wang.fang@jingyuan-coop.cn", "role": "staff"}]}
    )

    email: EmailStr = Field(description="The e-mail of an existing account.")
    role: Role


class MemberUpdate(Input):
    role: Role


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    display_name: str
    role: Role
    joined_at: dt.datetime


class InvitationCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "zhao.lei@example.cn", "role": "viewer"}]}
    )

    email: EmailStr
    role: Role


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organisation_id: uuid.UUID
    email: str
    role: Role
    expires_at: dt.datetime
    accepted_at: dt.datetime | None
    revoked_at: dt.datetime | None = None
    created_at: dt.datetime
    status: Literal["open", "accepted", "revoked", "expired"] = "open"


class InvitationCreated(InvitationRead):
    token: str = Field(description="Send this to the invitee; it is shown only once.")


class InvitationAccept(Input):
    token: str = Field(min_length=10, max_length=200)


class AuditRegionsSet(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"region_codes": ["620400"]}]})

    region_codes: list[str] = Field(
        max_length=500, description="Province, city or county codes the authority may audit."
    )
