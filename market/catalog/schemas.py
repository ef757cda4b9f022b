"""Request and response shapes of categories, products and certifications."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from market.inputs import Input

Unit = Literal["kg", "jin", "piece", "box"]
StorageClass = Literal["ambient", "chilled", "frozen"]
CertificationKind = Literal["green_food", "organic", "pollution_free", "gi"]
ImageUrl = Annotated[HttpUrl, Field(description="An http or https URL (at most 2083 characters).")]

MAX_IMAGES = 10
PRODUCT_EXAMPLE: dict[str, Any] = {
    "name_zh": "靖远枸杞 特级 500g 礼盒",
    "name_en": "Jingyuan wolfberry, premium grade, 500 g gift box",
    "category_code": "dried_fruit_nuts",
    "regional_brand": "靖远枸杞",
    "unit": "box",
    "box_net_weight_g": 500,
    "shelf_life_days": 540,
    "storage_class": "ambient",
    "image_urls": ["https://img.jingyuan-coop.cn/gouqi/tj-500g.jpg"],
    "description": "黄河石林脚下砂地种植，自然晾晒，颗粒饱满，每盒净含量500克。",
}


class CategoryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "dried_fruit_nuts",
                    "name_zh": "干果坚果",
                    "name_en": "Dried fruit and nuts",
                    "parent_code": None,
                    "position": 20,
                }
            ]
        },
    )

    code: str
    name_zh: str
    name_en: str
    parent_code: str | None
    position: int


class ProductCreate(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [PRODUCT_EXAMPLE]})

    name_zh: str = Field(min_length=1, max_length=200, description="Product name in Chinese.")
    name_en: str | None = Field(default=None, max_length=200)
    category_code: str = Field(
        min_length=1, max_length=40, description="A code from GET /catalog/categories."
    )
    regional_brand: str | None = Field(
        default=None,
        max_length=100,
        description="Regional public brand, e.g. 靖远枸杞. A geographical-indication mark is "
        "recorded as a certification of kind `gi`.",
    )
    unit: Unit = Field(
        description="Unit of sale: kg, jin (500 g), piece, or box (needs box_net_weight_g)."
    )
    box_net_weight_g: int | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Net weight of one box in grams; required for unit box, refused otherwise.",
    )
    shelf_life_days: int = Field(gt=0, le=3650)
    storage_class: StorageClass
    image_urls: list[ImageUrl] = Field(default_factory=list, max_length=MAX_IMAGES)
    description: str | None = Field(default=None, max_length=4000)


# fields a PATCH may leave out but never set to null
_REQUIRED_ON_PATCH = (
    "name_zh",
    "category_code",
    "unit",
    "shelf_life_days",
    "storage_class",
    "image_urls",
)


class ProductUpdate(Input):
    """Only the fields sent change; send null to clear an optional field."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name_zh": "靖远枸杞 特级 250g 礼盒", "box_net_weight_g": 250},
                {"unit": "jin", "box_net_weight_g": None},
            ]
        }
    )

    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    category_code: str | None = Field(default=None, min_length=1, max_length=40)
    regional_brand: str | None = Field(default=None, max_length=100)
    unit: Unit | None = Field(
        default=None,
        description="May change between kg, jin and box (all counted in grams), never between "
        "those and piece.",
    )
    box_net_weight_g: int | None = Field(default=None, gt=0, le=1_000_000)
    shelf_life_days: int | None = Field(default=None, gt=0, le=3650)
    storage_class: StorageClass | None = None
    image_urls: list[ImageUrl] | None = Field(default=None, max_length=MAX_IMAGES)
    description: str | None = Field(default=None, max_length=4000)

    @field_validator(*_REQUIRED_ON_PATCH, mode="after")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("this field cannot be null; leave it out to keep its value")
        return value


class CertificationCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "green_food",
                    "certificate_number": "LB-18-24010623456A",
                    "issuer": "中国绿色食品发展中心",
                    "valid_until": "2027-01-05",
                },
                {
                    "kind": "gi",
                    "certificate_number": "AGI01872",
                    "issuer": "农业农村部",
                    "valid_until": "2030-12-31",
                },
            ]
        }
    )

    kind: CertificationKind = Field(
        description="green_food 绿色食品, organic 有机, pollution_free 无公害, "
        "gi 地理标志 (geographical indication)."
    )
    certificate_number: str = Field(min_length=1, max_length=64)
    issuer: str = Field(min_length=1, max_length=200, description="e.g. 中国绿色食品发展中心.")
    valid_until: dt.date = Field(description="Last day on which the certificate is valid.")


class CertificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    product_id: uuid.UUID
    kind: CertificationKind
    certificate_number: str
    issuer: str
    valid_until: dt.date
    is_valid: bool = Field(
        description="Whether valid_until is today or later (China time), computed at read time."
    )
    created_at: dt.datetime


class ProductRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **PRODUCT_EXAMPLE,
                    "id": "0b9a6d1e-6f0c-4a51-9d43-3c1f3b0e2a10",
                    "cooperative_id": "5f1d2c3b-8a9e-4b7c-a6d5-e4f3a2b1c0d9",
                    "base_unit": "g",
                    "unit_size": 500,
                    "certifications": [],
                    "created_at": "2026-12-01T08:00:00Z",
                    "updated_at": "2026-12-01T08:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    cooperative_id: uuid.UUID
    category_code: str
    name_zh: str
    name_en: str | None
    regional_brand: str | None
    unit: Unit
    box_net_weight_g: int | None
    base_unit: Literal["g", "piece"] = Field(
        description="What quantities of this product (lots, sourcing records) count: grams or "
        "pieces."
    )
    unit_size: int = Field(description="Base units in one unit of sale (kg 1000, jin 500, …).")
    shelf_life_days: int
    storage_class: StorageClass
    image_urls: list[str]
    description: str | None
    certifications: list[CertificationRead]
    created_at: dt.datetime
    updated_at: dt.datetime
