"""The search interface every backend implements, and the plain data it exchanges.

Backends never see ORM objects: `market` builds a ListingDocument per publicly visible listing
(the listing, its product, cooperative, county and poor share, denormalised) and asks with a
Query. Both backends analyse text with `search.analysis`, so that they give the same answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Sort = Literal["relevance", "price_asc", "price_desc", "newest", "distance", "poor_share"]
FACETS = ("category", "province", "certification", "storage_class", "price")
# price facet buckets in fen per unit of sale, [from, to); the value is "from-to" or "from-"
PRICE_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (0, 1_000),
    (1_000, 3_000),
    (3_000, 6_000),
    (6_000, 10_000),
    (10_000, None),
)
MAX_LIMIT = 100
# Relevance, the same on both backends: for each group of the query (a word and its
# alternatives), the boosts of the document's fields holding one of its terms, added up. The
# fields are the weights of the analysed terms: A title, B product and brand, C cooperative,
# D places. Neither term frequency nor length counts: a listing's score is a small integer,
# exact in any float, and equal scores are ordered by id on both backends.
WEIGHT_BOOSTS: dict[str, int] = {"A": 10, "B": 4, "C": 2, "D": 1}


@dataclass(frozen=True)
class Health:
    ok: bool
    backend: str
    detail: str = ""


@dataclass(frozen=True)
class GeoPoint:
    latitude: float
    longitude: float


@dataclass(frozen=True)
class ListingDocument:
    """What is indexed for one publicly visible listing. `version` only grows with every
    change of the listing: a backend never replaces a document by an older version."""

    id: str
    version: int
    title_zh: str
    title_en: str | None
    product_name_zh: str
    regional_brand: str | None
    cooperative_id: str
    cooperative_name_zh: str
    county_code: str
    county_name_zh: str
    city_name_zh: str | None
    province_name_zh: str
    is_poverty_county: bool
    category_code: str
    certifications: tuple[str, ...]  # kinds of the valid certificates the listing claims
    storage_class: str
    sale_mode: str
    unit_price_fen: int
    quantity_available: int
    poor_share_bp: int | None
    location: GeoPoint
    published_at: dt.datetime

    @property
    def province_code(self) -> str:
        return self.county_code[:2] + "0000"

    @property
    def city_code(self) -> str:
        return self.county_code[:4] + "00"


@dataclass(frozen=True)
class Query:
    """A search. Every filter is optional; empty `text` means everything the filters allow.
    `region_code` is a province, city or county code (620000, 620400, 620421)."""

    text: str = ""
    category: str | None = None
    region_code: str | None = None
    poverty_counties_only: bool = False
    certification: str | None = None
    storage_class: str | None = None
    sale_mode: str | None = None
    price_min_fen: int | None = None
    price_max_fen: int | None = None
    min_poor_share_bp: int | None = None
    min_available: int | None = None
    near: GeoPoint | None = None
    max_distance_km: float | None = None
    sort: Sort = "relevance"
    limit: int = 20
    cursor: str | None = None
    facets: bool = False


@dataclass(frozen=True)
class Deletion:
    """Remove listing `id` from the index unless a newer version than `version` is there."""

    id: str
    version: int


@dataclass(frozen=True)
class ItemFailure:
    """One document of a batch that the backend could not apply. An older version rejected
    because a newer one is indexed is not a failure. `retryable` says whether sending the
    same document again may succeed (the server was busy) or not (the document is refused)."""

    id: str
    reason: str
    retryable: bool


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    distance_km: float | None = None
    highlight: str | None = None  # the Chinese title with matched terms in <em>…</em>
    document: ListingDocument | None = None  # as indexed, for showing the hit without a lookup


@dataclass(frozen=True)
class FacetCount:
    value: str
    count: int


@dataclass(frozen=True)
class Result:
    hits: list[Hit]
    total: int  # all matches, or a lower bound when not total_exact
    next_cursor: str | None = None
    facets: dict[str, list[FacetCount]] = field(default_factory=dict)
    # False when there are more matches than the backend counts exactly (total is then that
    # limit, and facets count that many of the matches)
    total_exact: bool = True


@runtime_checkable
class SearchEngine(Protocol):
    name: str

    async def health(self) -> Health:
        """Whether the engine answers; never raises."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ListingIndex(Protocol):
    """What a search backend does with listings (implemented by each backend)."""

    async def index(self, documents: Sequence[ListingDocument]) -> list[ItemFailure]:
        """Add or replace documents; an older version never replaces a newer one. Raises
        when the backend cannot be reached at all; returns the documents it refused."""
        ...

    async def delete(self, deletions: Sequence[Deletion]) -> list[ItemFailure]:
        """Remove listings (closed, paused, sold out) unless a newer version is indexed."""
        ...

    async def search(self, query: Query) -> Result: ...

    async def suggest(self, prefix: str, limit: int = 10) -> list[str]:
        """Completions of a typed prefix (Chinese, pinyin or English) from indexed titles."""
        ...


@runtime_checkable
class ListingSearch(SearchEngine, ListingIndex, Protocol):
    """What the application is given: a search engine that indexes and searches listings."""
