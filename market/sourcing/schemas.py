"""Request and response shapes of lots, sourcing records, shares and chain verification."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from market.inputs import Input


class LotCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "product_id": "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
                    "harvest_date": "2026-08-15",
                    "grade": "特级",
                    "storage_place": "靖远县东湾镇合作社冷库 2 号",
                }
            ]
        }
    )

    product_id: uuid.UUID
    harvest_date: dt.date | None = None
    production_date: dt.date | None = None
    grade: str | None = Field(default=None, max_length=40)
    storage_place: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class ShareRead(BaseModel):
    """Exact figures behind the poor-household share. Shares are in basis points
    (1 bp = 0.01 %), rounded half-even; null when the lot has nothing sourced."""

    quantity: int = Field(description="Net quantity sourced, in the product's base unit.")
    value_fen: int
    poor_quantity: int
    poor_value_fen: int
    poor_share_bp: int | None = Field(description="Poor households' share of value.")
    poor_quantity_share_bp: int | None
    households: int
    poor_households: int
    records: int


class LotRead(BaseModel):
    id: uuid.UUID
    cooperative_id: uuid.UUID
    product_id: uuid.UUID
    trace_code: str
    harvest_date: dt.date | None
    production_date: dt.date | None
    grade: str | None
    storage_place: str | None
    note: str | None
    created_at: dt.datetime
    share: ShareRead


class PurchaseCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "household_id": "9b2f4c1e-0d3a-4b5c-8e7f-1a2b3c4d5e6f",
                    "quantity": 125500,
                    "unit_price_fen": 4200,
                    "purchase_date": "2026-08-16",
                    "evidence_ref": "收购单 JY-2026-0816-031",
                }
            ]
        }
    )

    household_id: uuid.UUID
    quantity: int = Field(
        gt=0, le=10**12, description="Base units: grams (for kg, jin, box) or pieces."
    )
    unit_price_fen: int = Field(
        ge=0, le=10**9, description="Price paid to the household, fen per kg (or per piece)."
    )
    purchase_date: dt.date
    evidence_ref: str | None = Field(default=None, max_length=100)
    evidence_url: HttpUrl | None = None


class Reversal(Input):
    reason: str = Field(min_length=2, max_length=1000, description="Why the record is wrong.")


class Amendment(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "过磅单据录入错误", "quantity": 120500}]}
    )

    reason: str = Field(min_length=2, max_length=1000)
    household_id: uuid.UUID | None = None
    quantity: int | None = Field(default=None, gt=0, le=10**12)
    unit_price_fen: int | None = Field(default=None, ge=0, le=10**9)
    purchase_date: dt.date | None = None
    evidence_ref: str | None = Field(default=None, max_length=100)


class RecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    id: uuid.UUID
    lot_id: uuid.UUID
    household_id: uuid.UUID
    kind: Literal["purchase", "reversal"]
    reverses_seq: int | None
    quantity: int
    unit_price_fen: int
    amount_fen: int
    purchase_date: dt.date
    evidence_ref: str | None
    evidence_url: str | None
    reason: str | None
    recorded_at: dt.datetime
    hash: str = Field(description="SHA-256 of the previous hash and this record, hex.")


class AmendmentRead(BaseModel):
    reversal: RecordRead
    replacement: RecordRead


class VerificationRead(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    first_break_seq: int | None = None
    first_break_record_id: str | None = None
    reason: str | None = None


class TraceRead(BaseModel):
    """What anyone may know about a lot from its trace code: no personal data."""

    trace_code: str
    product_name_zh: str
    product_name_en: str | None
    regional_brand: str | None
    category_name_zh: str
    cooperative_name_zh: str
    county_code: str
    county_path: list[str]
    is_poverty_county: bool
    harvest_date: dt.date | None
    production_date: dt.date | None
    grade: str | None
    households: int
    poor_households: int
    poor_share_bp: int | None
    poor_quantity_share_bp: int | None
