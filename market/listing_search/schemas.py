"""Search requests and results as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from search.base import MAX_LIMIT

SortName = Literal["relevance", "price_asc", "price_desc", "newest", "distance", "poor_share"]


class SearchParams(BaseModel):
    """Query parameters of GET /search/listings. Unknown parameters are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"q": "靖远 枸杞", "certification": "organic"}]},
    )

    q: str = Field(
        default="",
        max_length=100,
        description="Words in Chinese, pinyin (full or initials) or English: 枸杞, gouqi, gq, "
        "wolfberry. Every word must match; place names (宁夏, 靖远) must match the origin.",
    )
    category: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]{1,40}$", examples=["dried_fruit_nuts"]
    )
    region: str | None = Field(
        default=None,
        pattern=r"^\d{6}$",
        description="Province, city or county code of the cooperative: 620000, 620400, 620421.",
    )
    poverty_only: bool = Field(
        default=False, description="Only cooperatives in designated poverty counties."
    )
    certification: Literal["green_food", "organic", "pollution_free", "gi"] | None = None
    storage_class: Literal["ambient", "chilled", "frozen"] | None = None
    sale_mode: Literal["fixed", "negotiable", "auction"] | None = None
    price_min: int | None = Field(default=None, ge=0, le=10**12, description="Fen per unit.")
    price_max: int | None = Field(default=None, ge=0, le=10**12, description="Fen per unit.")
    min_poor_share: int | None = Field(
        default=None, ge=0, le=10_000, description="Basis points: 4000 = at least 40%."
    )
    min_available: int | None = Field(default=None, ge=1, le=10**12)
    destination: str | None = Field(
        default=None,
        pattern=r"^\d{6}$",
        description="The buyer's destination region code: results show the distance to it.",
        examples=["110000"],
    )
    near: str | None = Field(
        default=None,
        pattern=r"^-?\d{1,2}(\.\d+)?,-?\d{1,3}(\.\d+)?$",
        description="The buyer's point as `latitude,longitude` (instead of a destination).",
        examples=["39.9042,116.4074"],
    )
    max_km: int | None = Field(
        default=None, ge=1, le=10_000, description="Only within this distance (needs a point)."
    )
    sort: SortName = "relevance"
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=500)
    facets: bool = Field(default=False, description="Count results by category, province, …")


class SearchCooperative(BaseModel):
    id: str
    name_zh: str


class SearchPlace(BaseModel):
    county_code: str
    county_name_zh: str
    city_name_zh: str | None
    province_name_zh: str
    is_poverty_county: bool


class SearchHit(BaseModel):
    id: str
    title_zh: str
    title_en: str | None
    highlight: str | None = Field(
        description="The Chinese title with the matched words in <em>…</em>."
    )
    product_name_zh: str
    regional_brand: str | None
    category_code: str
    cooperative: SearchCooperative
    place: SearchPlace
    sale_mode: str
    storage_class: str
    unit_price_fen: int = Field(description="Fen per unit of sale.")
    quantity_available: int
    certifications: list[str]
    poor_share_bp: int | None
    distance_km: float | None = Field(
        description="Straight-line distance to the destination, when one was given."
    )
    published_at: dt.datetime


class FacetValue(BaseModel):
    value: str
    label: str
    count: int


class SearchResults(BaseModel):
    items: list[SearchHit]
    total: int = Field(
        description="How many listings match, across all pages (at most 500 counted: show "
        "'500+' when `total_exact` is false)."
    )
    total_exact: bool = Field(
        default=True,
        description="False when more than 500 match: `total` is then a lower bound and, on "
        "PostgreSQL, the facets count 500 of the matches (the newest, sorted by relevance).",
    )
    next_cursor: str | None = None
    facets: dict[str, list[FacetValue]] = Field(default_factory=dict)


class Suggestions(BaseModel):
    items: list[str] = Field(examples=[["靖远枸杞 特级干果 500g", "宁夏中宁枸杞 头茬"]])
