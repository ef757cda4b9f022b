"""Request and response shapes of bids, counter-offers and auction results."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from market.listings.schemas import MAX_PRICE_FEN, MAX_QUANTITY, Input

BidStatus = Literal[
    "open",
    "countered",
    "accepted",
    "rejected",
    "withdrawn",
    "expired",
    "won",
    "partially_won",
    "lost",
]


class BidCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "listing_id": "3f1c2b9e-8d7a-4c6b-9e5f-1a2b3c4d5e6f",
                    "unit_price_fen": 6000,
                    "quantity": 100,
                    "partial_ok": True,
                    "expires_at": "2026-12-03T18:00:00+08:00",
                    "destination_code": "120101",
                    "address": "天津市和平区南市食品街 3 号仓",
                    "contact_name": "李国强",
                    "contact_phone": "13920000000",
                }
            ]
        }
    )

    listing_id: uuid.UUID
    unit_price_fen: int = Field(gt=0, le=MAX_PRICE_FEN, description="Fen per unit of sale.")
    quantity: int = Field(gt=0, le=MAX_QUANTITY, description="Units of sale.")
    partial_ok: bool = Field(description="Whether a smaller quantity is acceptable.")
    expires_at: AwareDatetime | None = Field(
        default=None, description="Negotiation bids: until when the offer stands (required)."
    )
    destination_code: str = Field(pattern=r"^\d{6}$")
    address: str = Field(min_length=4, max_length=300)
    contact_name: str = Field(min_length=1, max_length=60)
    contact_phone: str = Field(pattern=r"^\+?[0-9][0-9 -]{5,30}$")
    note: str | None = Field(default=None, max_length=500)


class BidAccept(Input):
    quantity: int | None = Field(
        default=None, gt=0, le=MAX_QUANTITY, description="Fewer units (partial acceptance)."
    )


class BidReject(Input):
    reason: str = Field(min_length=1, max_length=300, examples=["价格低于成本"])


class CounterCreate(Input):
    unit_price_fen: int = Field(gt=0, le=MAX_PRICE_FEN)
    quantity: int = Field(gt=0, le=MAX_QUANTITY)
    expires_at: AwareDatetime
    message: str | None = Field(default=None, max_length=300)


class CounterRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: Literal["open", "accepted", "declined", "expired"]
    unit_price_fen: int
    quantity: int
    expires_at: dt.datetime
    message: str | None
    created_at: dt.datetime


class BidRead(BaseModel):
    id: uuid.UUID
    kind: Literal["negotiation", "auction"]
    listing_id: uuid.UUID
    listing_title_zh: str
    cooperative_id: uuid.UUID
    buyer_id: uuid.UUID
    status: BidStatus
    unit_price_fen: int
    quantity: int
    partial_ok: bool
    expires_at: dt.datetime | None
    destination_code: str
    filled_quantity: int | None = Field(description="Units won or accepted.")
    outcome_reason: str | None
    order_id: uuid.UUID | None
    created_at: dt.datetime
    counters: list[CounterRead]


class BidPage(BaseModel):
    items: list[BidRead]
    next_cursor: str | None = None


class AuctionResultRead(BaseModel):
    listing_id: uuid.UUID
    cleared_at: dt.datetime
    quantity_offered: int
    quantity_allocated: int
    revenue_fen: int
    bids: list[BidRead] = Field(description="Every bid with its outcome, best first.")
