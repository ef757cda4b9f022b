"""Request and response shapes of orders, fulfilments, shipments and tracking events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from market.listings.schemas import MAX_QUANTITY, Input

OrderStatus = Literal["pending_payment", "paid", "completed", "cancelled", "expired", "disputed"]
FulfilmentStatus = Literal["pending", "packed", "shipped", "delivered", "cancelled"]


class OrderLineCreate(Input):
    listing_id: uuid.UUID
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description="Units of sale (the listing's unit).")


class OrderCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lines": [
                        {"listing_id": "3f1c2b9e-8d7a-4c6b-9e5f-1a2b3c4d5e6f", "quantity": 40}
                    ],
                    "destination_code": "110105",
                    "address": "北京市朝阳区新发地农产品批发市场 B 区 12 号",
                    "contact_name": "王建国",
                    "contact_phone": "13800138000",
                }
            ]
        }
    )

    lines: list[OrderLineCreate] = Field(min_length=1, max_length=50)
    destination_code: str = Field(pattern=r"^\d{6}$", description="Delivery region code.")
    address: str = Field(min_length=4, max_length=300)
    contact_name: str = Field(min_length=1, max_length=60)
    contact_phone: str = Field(pattern=r"^\+?[0-9][0-9 -]{5,30}$")
    note: str | None = Field(default=None, max_length=500)


class OrderCancel(Input):
    reason: str = Field(min_length=1, max_length=300, examples=["采购计划调整"])


class FulfilmentDecline(Input):
    reason: str = Field(min_length=1, max_length=300, examples=["冷库故障，本批次无法发货"])


class ShipmentCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"carrier": "顺丰冷运", "tracking_number": "SF1234567890", "cold_chain": True}
            ]
        }
    )

    carrier: str = Field(min_length=1, max_length=60)
    tracking_number: str = Field(min_length=1, max_length=60)
    cold_chain: bool = False


class TrackingEventCreate(Input):
    happened_at: AwareDatetime
    location: str | None = Field(default=None, max_length=100)
    description: str = Field(min_length=1, max_length=300, examples=["已到达北京顺义转运中心"])
    temperature_c10: int | None = Field(
        default=None, ge=-500, le=600, description="Tenths of a degree Celsius (cold chain)."
    )


class OrderLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    fulfilment_id: uuid.UUID
    listing_id: uuid.UUID
    lot_id: uuid.UUID
    title_zh: str
    quantity: int
    unit_price_fen: int
    line_total_fen: int
    poor_share_bp: int | None = Field(description="The lot's share when ordered (frozen).")


class TrackingEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    happened_at: dt.datetime
    location: str | None
    description: str
    temperature_c10: int | None


class ShipmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    carrier: str
    tracking_number: str
    cold_chain: bool
    created_at: dt.datetime
    events: list[TrackingEventRead] = []


class FulfilmentRead(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    cooperative_id: uuid.UUID
    cooperative_name_zh: str
    status: FulfilmentStatus
    goods_fen: int
    logistics_fen: int
    transit_days: int
    packed_at: dt.datetime | None
    shipped_at: dt.datetime | None
    confirm_by: dt.datetime | None = Field(
        description="When delivery is confirmed automatically unless the buyer does it first."
    )
    delivered_at: dt.datetime | None
    delivery_confirmed_by: Literal["buyer", "auto"] | None
    cancelled_at: dt.datetime | None = None
    decline_reason: str | None = Field(
        default=None, description="Why the cooperative declined this part, when it did."
    )
    lines: list[OrderLineRead]
    shipments: list[ShipmentRead]


class DeliveryAddress(BaseModel):
    destination_code: str
    address: str
    contact_name: str
    contact_phone: str


class IncomingFulfilmentRead(FulfilmentRead):
    """What the cooperative sees: its part of the order and where to send it."""

    order_status: OrderStatus
    deliver_to: DeliveryAddress


class OrderRead(BaseModel):
    id: uuid.UUID
    buyer_id: uuid.UUID
    status: OrderStatus
    source: Literal["direct", "bid", "auction"]
    currency: str
    goods_fen: int
    logistics_fen: int
    fee_fen: int = Field(description="The platform fee (fee_bps of the goods, half-even).")
    fee_bps: int
    total_fen: int = Field(description="goods + logistics + fee: what the buyer pays.")
    deliver_to: DeliveryAddress
    note: str | None
    payment_due_at: dt.datetime = Field(description="Unpaid by then, the order expires.")
    paid_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    cancel_reason: str | None
    created_at: dt.datetime
    fulfilments: list[FulfilmentRead]


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_cursor: str | None = None


class FulfilmentPage(BaseModel):
    items: list[IncomingFulfilmentRead]
    next_cursor: str | None = None


class DisputeCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "fulfilment_id": "5a6b7c8d-1e2f-4a3b-8c9d-0e1f2a3b4c5d",
                    "reason": "quality",
                    "description": "约三成枸杞受潮结块",
                    "evidence": ["照片 IMG_2041.jpg", "收货记录 2026-12-03"],
                    "claimed_fen": 48_000,
                }
            ]
        }
    )

    fulfilment_id: uuid.UUID
    reason: Literal["quality", "quantity", "not_delivered", "not_as_described"]
    description: str = Field(min_length=4, max_length=2000)
    evidence: list[str] = Field(default_factory=list, max_length=20)
    claimed_fen: int | None = Field(default=None, gt=0, le=10**12)


class DisputeAnswer(Input):
    answer: str = Field(min_length=2, max_length=2000, examples=["发货前已抽检，同意补发 5 kg"])


class DisputeDecision(Input):
    decision: Literal["reject", "partial_refund", "full_refund"]
    refund_fen: int | None = Field(
        default=None, gt=0, le=10**12, description="For a partial refund: how much."
    )
    note: str = Field(min_length=2, max_length=2000)


class DisputeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
    fulfilment_id: uuid.UUID
    reason: str
    description: str
    evidence: list[str]
    claimed_fen: int | None
    status: Literal["open", "answered", "decided"]
    answer: str | None
    answered_at: dt.datetime | None
    decision: Literal["reject", "partial_refund", "full_refund"] | None
    refund_fen: int | None
    decision_note: str | None
    decided_at: dt.datetime | None
    created_at: dt.datetime


class DisputePage(BaseModel):
    items: list[DisputeRead]
    next_cursor: str | None = None
