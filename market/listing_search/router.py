"""HTTP: listing search and autocomplete, public; the sync's backlog for platform operators."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.routing import Route

from market.catalog import service as catalog_service
from market.deps import SearchDep
from market.errors import Invalid, MarketError
from market.listing_search.schemas import (
    SearchParams,
    SearchResults,
    Suggestions,
)
from market.regions import service as regions_service
from market.routing import MarketRoute
from search.base import GeoPoint, Hit, ListingSearch
from search.base import Query as SearchQuery

router = APIRouter(route_class=MarketRoute, prefix="/search", tags=["search"])

CERTIFICATION_LABELS = {
    "gi": "地理标志",
    "green_food": "绿色食品",
    "organic": "有机",
    "pollution_free": "无公害",
}
STORAGE_LABELS = {"ambient": "常温", "chilled": "冷藏", "frozen": "冷冻"}


class SearchUnavailable(MarketError):
    status = 503
    code = "search_unavailable"
    title = "Search is unavailable"


def _price_label(value: str) -> str:
    low, _, high = value.partition("-")
    yuan = lambda fen: f"{int(fen) / 100:g}"  # noqa: E731
    return f"{yuan(low)}–{yuan(high)} 元" if high else f"{yuan(low)} 元以上"


def _hit(hit: Hit) -> dict[str, Any]:
    """A hit as the API shows it (a SearchHit), as plain data: `answer` validates the whole
    page in one call, several times cheaper than building twenty nested models one by one."""
    doc = hit.document
    assert doc is not None, "backends return the indexed document with each hit"
    return {
        "id": doc.id,
        "title_zh": doc.title_zh,
        "title_en": doc.title_en,
        "highlight": hit.highlight,
        "product_name_zh": doc.product_name_zh,
        "regional_brand": doc.regional_brand,
        "category_code": doc.category_code,
        "cooperative": {"id": doc.cooperative_id, "name_zh": doc.cooperative_name_zh},
        "place": {
            "county_code": doc.county_code,
            "county_name_zh": doc.county_name_zh,
            "city_name_zh": doc.city_name_zh,
            "province_name_zh": doc.province_name_zh,
            "is_poverty_county": doc.is_poverty_county,
        },
        "sale_mode": doc.sale_mode,
        "storage_class": doc.storage_class,
        "unit_price_fen": doc.unit_price_fen,
        "quantity_available": doc.quantity_available,
        "certifications": list(doc.certifications),
        "poor_share_bp": doc.poor_share_bp,
        "distance_km": None if hit.distance_km is None else round(hit.distance_km, 1),
        "published_at": doc.published_at,
    }


@router.get(
    "/listings",
    summary="Search active listings",
    description="Chinese, pinyin (gouqi, gq) or English words, typos forgiven; filters, "
    "facets with counts, highlights, distance to the buyer's destination; pages by `cursor`. "
    "Only listings on sale now are found; a change shows within a second or so.",
)
async def search_listings(
    params: Annotated[SearchParams, Query()], request: Request, search: SearchDep
) -> SearchResults:
    return await answer(request.app, params, search)


async def answer(app: Any, params: SearchParams, search: ListingSearch) -> SearchResults:
    """The search as the API answers it (both routes of GET /search/listings)."""
    near: GeoPoint | None = None
    if params.near is not None:
        latitude, longitude = (float(x) for x in params.near.split(","))
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise Invalid.field("near", "Latitude must be within ±90 and longitude ±180.")
        near = GeoPoint(latitude, longitude)
    elif params.destination is not None:
        near = (await Reference.of(app)).point(params.destination, field="destination")
    if near is None and (params.sort == "distance" or params.max_km is not None):
        field = "sort" if params.sort == "distance" else "max_km"
        raise Invalid.field(field, "Give a destination (or near) to sort or filter by distance.")
    if (
        params.price_min is not None
        and params.price_max is not None
        and params.price_min > params.price_max
    ):
        raise Invalid.field("price_max", "price_max is below price_min.")
    query = SearchQuery(
        text=params.q,
        category=params.category,
        region_code=params.region,
        poverty_counties_only=params.poverty_only,
        certification=params.certification,
        storage_class=params.storage_class,
        sale_mode=params.sale_mode,
        price_min_fen=params.price_min,
        price_max_fen=params.price_max,
        min_poor_share_bp=params.min_poor_share,
        min_available=params.min_available,
        near=near,
        max_distance_km=params.max_km,
        sort=params.sort,
        limit=params.limit,
        cursor=params.cursor,
        facets=params.facets,
    )
    try:
        result = await search.search(query)
    except ValueError as exc:
        raise Invalid.field(
            "cursor", f"This cursor does not belong to this search ({exc})."
        ) from exc
    except Exception as exc:
        raise SearchUnavailable("Search is unavailable right now; please try again.") from exc
    facets: dict[str, list[dict[str, Any]]] = {}
    if result.facets:
        reference = await Reference.of(app)
        labels = {
            "category": reference.categories,
            "province": reference.region_names,
            "certification": CERTIFICATION_LABELS,
            "storage_class": STORAGE_LABELS,
        }
        for name, counts in result.facets.items():
            facets[name] = [
                {
                    "value": f.value,
                    "label": _price_label(f.value)
                    if name == "price"
                    else labels.get(name, {}).get(f.value, f.value),
                    "count": f.count,
                }
                for f in counts
            ]
    return SearchResults.model_validate(
        {
            "items": [_hit(h) for h in result.hits],
            "total": result.total,
            "total_exact": result.total_exact,
            "next_cursor": result.next_cursor,
            "facets": facets,
        }
    )


@dataclass(frozen=True)
class Reference:
    """Category names and region names and points, read once per app and again after
    REFERENCE_TTL_S: they change only with a migration, and reading them per search with
    facets or a destination cost two more queries on a second connection each time."""

    categories: dict[str, str]
    region_names: dict[str, str]
    region_points: dict[str, GeoPoint]
    read_at: float

    @classmethod
    async def of(cls, app: Any) -> Reference:
        reference: Reference | None = app.state.search_reference
        if reference is None or time.monotonic() - reference.read_at > REFERENCE_TTL_S:
            async with app.state.sessionmaker() as session:
                categories = await catalog_service.list_categories(session)
                regions = await regions_service.points(session)
            reference = cls(
                categories={c.code: c.name_zh for c in categories},
                region_names={code: name for code, (name, _, _) in regions.items()},
                region_points={code: GeoPoint(lat, lon) for code, (_, lat, lon) in regions.items()},
                read_at=time.monotonic(),
            )
            app.state.search_reference = reference
        return reference

    def point(self, code: str, *, field: str) -> GeoPoint:
        point = self.region_points.get(code)
        if point is None:
            raise Invalid.field(field, f"Unknown region code {code}.", code="unknown_region")
        return point


REFERENCE_TTL_S = 600.0


# The search, also served by a plain Starlette route installed ahead of the FastAPI routes (the
# FastAPI route above stays for the OpenAPI document and answers the same): it skips FastAPI's
# parameter and dependency machinery, about a millisecond of CPU per search. The same model
# validates the parameters, the same `answer` runs, the same model writes the JSON, and the
# same problem+json errors come out of the same handlers.
async def _search_listings_fast(request: Request) -> Response:
    try:
        params = SearchParams.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
        ) from None
    result = await answer(request.app, params, request.app.state.search)
    return Response(result.model_dump_json(), media_type="application/json")


def install_fast_routes(app: Any) -> None:
    """Put the plain route for GET /search/listings first, so that it wins the match."""
    route = Route("/search/listings", _search_listings_fast, methods=["GET"])
    route.methods = {"GET"}  # Starlette adds HEAD; the documented route answers GET only
    app.router.routes.insert(0, route)


@router.get(
    "/suggest",
    summary="Autocomplete listing titles",
    description="Titles of active listings that complete what the buyer has typed so far: "
    "Chinese characters, pinyin or English.",
)
async def suggest(
    search: SearchDep,
    q: Annotated[str, Query(min_length=1, max_length=50, examples=["靖远", "gouq"])],
    limit: Annotated[int, Query(ge=1, le=20)] = 10,
) -> Suggestions:
    try:
        items = await search.suggest(q, limit)
    except Exception as exc:
        raise SearchUnavailable("Search is unavailable right now; please try again.") from exc
    return Suggestions(items=items)
