"""HTTP: listing search and autocomplete, public; the sync's backlog for platform operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from market.catalog import service as catalog_service
from market.deps import SearchDep, SessionDep
from market.errors import Invalid, MarketError
from market.listing_search.schemas import (
    FacetValue,
    SearchCooperative,
    SearchHit,
    SearchParams,
    SearchPlace,
    SearchResults,
    Suggestions,
)
from market.regions import service as regions_service
from market.routing import MarketRoute
from search.base import GeoPoint, Hit
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


def _hit(hit: Hit) -> SearchHit:
    doc = hit.document
    assert doc is not None, "backends return the indexed document with each hit"
    return SearchHit(
        id=doc.id,
        title_zh=doc.title_zh,
        title_en=doc.title_en,
        highlight=hit.highlight,
        product_name_zh=doc.product_name_zh,
        regional_brand=doc.regional_brand,
        category_code=doc.category_code,
        cooperative=SearchCooperative(id=doc.cooperative_id, name_zh=doc.cooperative_name_zh),
        place=SearchPlace(
            county_code=doc.county_code,
            county_name_zh=doc.county_name_zh,
            city_name_zh=doc.city_name_zh,
            province_name_zh=doc.province_name_zh,
            is_poverty_county=doc.is_poverty_county,
        ),
        sale_mode=doc.sale_mode,
        storage_class=doc.storage_class,
        unit_price_fen=doc.unit_price_fen,
        quantity_available=doc.quantity_available,
        certifications=list(doc.certifications),
        poor_share_bp=doc.poor_share_bp,
        distance_km=None if hit.distance_km is None else round(hit.distance_km, 1),
        published_at=doc.published_at,
    )


@router.get(
    "/listings",
    summary="Search active listings",
    description="Chinese, pinyin (gouqi, gq) or English words, typos forgiven; filters, "
    "facets with counts, highlights, distance to the buyer's destination; pages by `cursor`. "
    "Only listings on sale now are found; a change shows within a second or so.",
)
async def search_listings(
    params: Annotated[SearchParams, Query()], search: SearchDep, session: SessionDep
) -> SearchResults:
    near: GeoPoint | None = None
    if params.near is not None:
        latitude, longitude = (float(x) for x in params.near.split(","))
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise Invalid.field("near", "Latitude must be within ±90 and longitude ±180.")
        near = GeoPoint(latitude, longitude)
    elif params.destination is not None:
        region = await regions_service.require_region(
            session, params.destination, field="destination"
        )
        near = GeoPoint(float(region.latitude), float(region.longitude))
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
    facets: dict[str, list[FacetValue]] = {}
    if result.facets:
        categories = {c.code: c.name_zh for c in await catalog_service.list_categories(session)}
        provinces = await regions_service.names(
            session, [f.value for f in result.facets.get("province", [])]
        )
        labels = {
            "category": categories,
            "province": provinces,
            "certification": CERTIFICATION_LABELS,
            "storage_class": STORAGE_LABELS,
        }
        for name, counts in result.facets.items():
            facets[name] = [
                FacetValue(
                    value=f.value,
                    label=_price_label(f.value)
                    if name == "price"
                    else labels.get(name, {}).get(f.value, f.value),
                    count=f.count,
                )
                for f in counts
            ]
    return SearchResults(
        items=[_hit(h) for h in result.hits],
        total=result.total,
        total_exact=result.total_exact,
        next_cursor=result.next_cursor,
        facets=facets,
    )


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
