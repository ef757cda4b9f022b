"""Request and response shapes of listings, their price tiers, stock adjustments and
movements, and the public listing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from market.inputs import Input

SaleMode = Literal["fixed", "negotiable", "auction"]
Status = Literal["draft", "active", "paused", "sold_out", "closed"]
DeliveryTerms = Literal["pickup", "delivered"]
MovementKind = Literal["list", "reserve", "release", "sell", "adjust", "close"]

MAX_QUANTITY = 10**12
MAX_PRICE_FEN = 10**10


class PriceTier(Input):
    """From `min_quantity` units of sale upwards, each unit costs `unit_price_fen`."""

    min_quantity: int = Field(ge=2, le=MAX_QUANTITY)
    unit_price_fen: int = Field(gt=0, le=MAX_PRICE_FEN)


class ListingCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "0b8e2f4a-1c3d-4e5f-9a7b-2c4d6e8f0a1b",
                    "title_zh": "靖远枸杞 特级 500g 礼盒 产地直发",
                    "unit_price_fen": 6800,
                    "price_tiers": [
                        {"min_quantity": 100, "unit_price_fen": 6500},
                        {"min_quantity": 500, "unit_price_fen": 6200},
                    ],
                    "min_order_quantity": 20,
                    "quantity": 2000,
                    "delivery_terms": "pickup",
                    "pickup_hub": "靖远县电子商务公共服务中心仓库",
                    "valid_until": "2027-03-31T23:59:59+08:00",
                    "sale_mode": "fixed",
                }
            ]
        }
    )

    lot_id: uuid.UUID = Field(description="A lot of your cooperative; its product is sold.")
    title_zh: str | None = Field(
        default=None, min_length=2, max_length=200, description="Defaults to the product name."
    )
    title_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    unit_price_fen: int = Field(
        gt=0,
        le=MAX_PRICE_FEN,
        description="Per unit of sale (the product's unit); the starting price of an auction.",
    )
    price_tiers: list[PriceTier] = Field(
        default_factory=list,
        max_length=10,
        description="Quantity discounts: min_quantity strictly increasing, price strictly "
        "decreasing, every tier cheaper than unit_price_fen and above min_order_quantity.",
    )
    min_order_quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    quantity: int = Field(
        gt=0, le=MAX_QUANTITY, description="Units of sale offered; the lot must hold them."
    )
    delivery_terms: DeliveryTerms
    pickup_hub: str | None = Field(
        default=None, min_length=2, max_length=200, description="Required for pickup."
    )
    valid_from: AwareDatetime | None = Field(default=None, description="Defaults to now.")
    valid_until: AwareDatetime | None = None
    sale_mode: SaleMode = "fixed"
    auction_closes_at: AwareDatetime | None = Field(
        default=None, description="Auctions only: sealed bids until then; in the future."
    )
    reserve_price_fen: int | None = Field(
        default=None, gt=0, le=MAX_PRICE_FEN, description="Auctions only: the lowest price sold."
    )
    certification_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=20, description="The product's valid certificates."
    )


class ListingUpdate(Input):
    """Change terms; the quantity changes only through stock adjustments."""

    title_zh: str | None = Field(default=None, min_length=2, max_length=200)
    title_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    unit_price_fen: int | None = Field(default=None, gt=0, le=MAX_PRICE_FEN)
    price_tiers: list[PriceTier] | None = Field(
        default=None, max_length=10, description="Replaces every tier; [] removes them."
    )
    min_order_quantity: int | None = Field(default=None, ge=1, le=MAX_QUANTITY)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    certification_ids: list[uuid.UUID] | None = Field(default=None, max_length=20)


class PriceTierRead(BaseModel):
    min_quantity: int
    unit_price_fen: int


class ListingRead(BaseModel):
    """A listing as its cooperative sees it, with every stock figure."""

    id: uuid.UUID
    cooperative_id: uuid.UUID
    lot_id: uuid.UUID
    product_id: uuid.UUID
    title_zh: str
    title_en: str | None
    description: str | None
    sale_mode: SaleMode
    status: Status
    unit_price_fen: int
    price_tiers: list[PriceTierRead]
    unit_size: int = Field(description="Base units (grams or pieces) in one unit of sale.")
    min_order_quantity: int
    quantity_listed: int = Field(description="= available + reserved + sold.")
    quantity_available: int
    quantity_reserved: int
    quantity_sold: int
    delivery_terms: DeliveryTerms
    pickup_hub: str | None
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    auction_closes_at: dt.datetime | None
    reserve_price_fen: int | None
    certification_ids: list[uuid.UUID]
    certification_warning: bool = Field(
        description="True when a claimed certificate has expired (or no longer exists)."
    )
    published_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class StockAdjustment(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"quantity": -12, "reason": "仓库盘点：12 盒包装破损", "reference": "PD-0412"}
            ]
        }
    )

    quantity: int = Field(
        ge=-MAX_QUANTITY,
        le=MAX_QUANTITY,
        description="Units of sale, signed: more (the lot must hold them) or fewer available.",
    )
    reason: str = Field(min_length=2, max_length=1000)
    reference: str | None = Field(default=None, max_length=200)


class StockMovementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    listing_id: uuid.UUID
    kind: MovementKind
    quantity: int = Field(
        description="Signed change of availability in units of sale; for `sell`, the change "
        "of the reserved quantity (availability does not move)."
    )
    available_after: int
    reason: str
    reference: str | None
    created_by_id: uuid.UUID | None
    created_at: dt.datetime


class StockAdjusted(BaseModel):
    movement: StockMovementRead
    listing: ListingRead


# ---------------------------------------------------------------- public


class PublicCooperative(BaseModel):
    id: uuid.UUID
    name_zh: str
    name_en: str | None


class PublicCounty(BaseModel):
    code: str
    name_zh: str


class PublicProduct(BaseModel):
    id: uuid.UUID
    name_zh: str
    name_en: str | None
    category_code: str
    regional_brand: str | None
    unit: Literal["kg", "jin", "piece", "box"]
    box_net_weight_g: int | None
    storage_class: Literal["ambient", "chilled", "frozen"]
    shelf_life_days: int


class PublicCertification(BaseModel):
    id: uuid.UUID
    kind: str
    certificate_number: str
    issuer: str
    valid_until: dt.date
    is_valid: bool


class PublicListingRead(BaseModel):
    """What anyone may read about an active listing. Never bids, reserve prices or who
    supplied the lot; the poor-household share is the lot's aggregate."""

    id: uuid.UUID
    title_zh: str
    title_en: str | None
    description: str | None
    cooperative: PublicCooperative
    county: PublicCounty
    product: PublicProduct
    sale_mode: SaleMode
    unit_price_fen: int
    price_tiers: list[PriceTierRead]
    min_order_quantity: int
    quantity_available: int
    auction_closes_at: dt.datetime | None
    delivery_terms: DeliveryTerms
    pickup_hub: str | None
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    published_at: dt.datetime | None
    certifications: list[PublicCertification]
    certification_warning: bool = Field(description="A claimed certificate has expired.")
    trace_code: str = Field(description="The lot's public trace code: GET /trace/{code}.")
    poor_share_bp: int | None = Field(
        description="The lot's poor-household share of purchase value in basis points "
        "(half-even); null when nothing has been sourced into it."
    )


class PublicListingPage(BaseModel):
    items: list[PublicListingRead]
    next_cursor: str | None = None
