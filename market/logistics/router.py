"""HTTP: logistics estimates for a listing and a destination, public like the listing."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query

from market.deps import SessionDep, SettingsDep
from market.errors import NotFound
from market.listings import service as listings_service
from market.logistics import service
from market.logistics.schemas import EstimateParams, EstimateRead
from market.routing import MarketRoute

router = APIRouter(route_class=MarketRoute, prefix="/logistics", tags=["logistics"])


@router.get(
    "/estimate",
    summary="Freight, transit time and freshness for a listing shipped to a destination",
    description="Road distance from the cooperative's county, freight from the rate table by "
    "storage class and weight band, transit days, and whether enough shelf life remains on "
    "arrival. Only for listings on sale now.",
)
async def estimate(
    params: Annotated[EstimateParams, Query()], session: SessionDep, settings: SettingsDep
) -> EstimateRead:
    try:
        await listings_service.public_listing(session, params.listing_id)
    except NotFound:
        raise NotFound("No such listing, or it is not on sale now.") from None
    result = await service.estimate_listing(
        session,
        listing_id=params.listing_id,
        destination_code=params.destination,
        quantity=params.quantity,
        margin_days=settings.freshness_margin_days,
    )
    return EstimateRead(**dataclasses.asdict(result))
