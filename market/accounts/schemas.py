"""Request and response shapes of accounts, tokens and API keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from market.inputs import Input


class UserCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "li.na@jingyuan-coop.cn",
                    "password": "gouqi-2026!",
                    "display_name": "李娜",
                }
            ]
        }
    )

    email: EmailStr
    password: str = Field(min_length=10, max_length=200, description="At least 10 characters.")
    display_name: str = Field(min_length=1, max_length=100)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str
    created_at: dt.datetime


class TokenRead(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
    expires_at: dt.datetime


class MembershipRead(BaseModel):
    organisation_id: uuid.UUID
    organisation_name_zh: str
    organisation_kind: str
    verification_status: str
    role: str


class MeRead(BaseModel):
    user: UserRead | None = Field(description="The signed-in user; null for an API key.")
    memberships: list[MembershipRead]
    api_key: ApiKeyRead | None = Field(default=None, description="Set when called with an API key.")


API_KEY_EXAMPLE: dict[str, Any] = {
    "name": "ERP 同步",
    "scopes": ["organisation:read", "members:read"],
}


class ApiKeyCreate(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [API_KEY_EXAMPLE]})

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=32)
    expires_at: AwareDatetime | None = Field(
        default=None, description="With a time zone: 2027-01-01T00:00:00+08:00."
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organisation_id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    scopes: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key. It is shown only this once; store it now.")


MeRead.model_rebuild()
