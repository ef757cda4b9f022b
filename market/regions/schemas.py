"""Response and request shapes of the gazetteer."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RegionRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "620421",
                    "name_zh": "靖远县",
                    "short_name_zh": "靖远",
                    "name_pinyin": "jingyuan",
                    "level": "county",
                    "parent_code": "620400",
                    "longitude": "104.676774",
                    "latitude": "36.571365",
                    "is_poverty_county": True,
                }
            ]
        },
    )

    code: str
    name_zh: str
    short_name_zh: str
    name_pinyin: str
    level: Literal["province", "city", "county"]
    parent_code: str | None
    longitude: Decimal
    latitude: Decimal
    is_poverty_county: bool


class RegionPath(RegionRead):
    path: list[str] = Field(
        description="Names from the province down, e.g. 甘肃省 › 白银市 › 靖远县."
    )


class DistanceRead(BaseModel):
    from_code: str
    to_code: str
    from_name: str
    to_name: str
    distance_km: Decimal = Field(description="Great-circle distance, to 0.1 km.")


class PovertyFlag(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"designated": True}]}
    )

    designated: bool = Field(description="Whether the county is a designated poverty county.")


class PovertyImportResult(BaseModel):
    rows: int
    changed: int
    unchanged: int
    errors: list[dict[str, str | int]]
