"""Logistics estimates as the API shows them."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field


class EstimateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listing_id: uuid.UUID
    destination: str = Field(
        pattern=r"^\d{6}$", description="Destination region code.", examples=["110000"]
    )
    quantity: int = Field(ge=1, le=10**9, description="Units of sale.", examples=[20])


class EstimateRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "origin_code": "620421",
                    "destination_code": "110000",
                    "straight_km": 1088.5,
                    "road_km": 1416,
                    "storage_class": "ambient",
                    "weight_g": 10000,
                    "freight_fen": 4916,
                    "transit_days": 4,
                    "remaining_shelf_life_days": 380,
                    "suitable": True,
                    "reason": None,
                }
            ]
        }
    )

    origin_code: str = Field(description="The cooperative's region.")
    destination_code: str
    straight_km: float
    road_km: int = Field(description="Straight line × 1.3.")
    storage_class: str
    weight_g: int = Field(description="Net weight of the goods.")
    freight_fen: int
    transit_days: int
    remaining_shelf_life_days: int | None = Field(
        description="Shelf life left today; null when the lot has no harvest or production date."
    )
    suitable: bool = Field(description="Whether enough shelf life is left on arrival.")
    reason: str | None = Field(description="Why the listing is unsuitable for this destination.")
