"""Factories for listing tests: a cooperative with a product, member households (one poor),
a lot with sourcing records, and listings from it.

Products, lots, memberships, records and listings go through their services. Households are
rows written directly: only the registry import (an authority's CSV) creates registered ones,
which is more than these tests need."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from market.accounts.models import User
from market.catalog import service as catalog_service
from market.catalog.models import Certification, Product
from market.households import service as households_service
from market.households.models import Household, PoorStatusPeriod
from market.listings import service as listings_service
from market.listings.models import Listing
from market.organisations.models import Organisation
from market.sourcing import service as sourcing_service
from market.sourcing.models import Lot
from tests.factories import member_with_token

WOLFBERRY_BOX: dict[str, Any] = {
    "name_zh": "靖远枸杞 特级 500g 礼盒",
    "name_en": "Jingyuan wolfberry, premium, 500 g box",
    "category_code": "dried_fruit_nuts",
    "regional_brand": "靖远枸杞",
    "unit": "box",
    "box_net_weight_g": 500,
    "shelf_life_days": 540,
    "storage_class": "ambient",
    "image_urls": [],
}

PURCHASED_ON = dt.date(2026, 9, 1)


@dataclass
class Supply:
    """A verified cooperative (with its owner's token), a product, a lot and its households."""

    owner: User
    cooperative: Organisation
    token: str
    product: Product
    lot: Lot
    poor: Household
    other: Household


async def registered_household(
    session: AsyncSession,
    cooperative: Organisation,
    *,
    poor_since: dt.date | None,
    name: str = "王建国",
) -> Household:
    """A household as the registry import would leave it (poor from `poor_since` if given),
    linked to the cooperative through the households service."""
    household = Household(
        registry_id=f"{cooperative.region_code}-{uuid.uuid4().hex[:10]}",
        county_code=cooperative.region_code,
        head_name=name,
        id_number_last4="0012",
    )
    session.add(household)
    await session.flush()
    if poor_since is not None:
        session.add(PoorStatusPeriod(household_id=household.id, valid_from=poor_since))
        await session.flush()
    assert household.registry_id is not None
    await households_service.link_registered(
        session,
        cooperative=cooperative,
        registry_id=household.registry_id,
        joined_on=dt.date(2020, 1, 1),
        left_on=None,
    )
    return household


async def purchase(
    session: AsyncSession, lot: Lot, household: Household, *, grams: int, price_per_kg: int
) -> None:
    await sourcing_service.append_purchase(
        session,
        lot=lot,
        household_id=household.id,
        quantity=grams,
        unit_price_fen=price_per_kg,
        purchase_date=PURCHASED_ON,
        recorded_by_id=None,
    )


async def open_lot(session: AsyncSession, cooperative: Organisation, product: Product) -> Lot:
    return await sourcing_service.open_lot(
        session,
        cooperative_id=cooperative.id,
        county_code=cooperative.region_code,
        data={"product_id": product.id, "harvest_date": dt.date(2026, 8, 15), "grade": "特级"},
    )


async def make_supply(
    session: AsyncSession,
    *,
    poor_grams: int = 60_000,
    other_grams: int = 40_000,
    region_code: str = "620421",
    product: dict[str, Any] | None = None,
) -> Supply:
    """By default 100 kg of wolfberry (200 boxes of 500 g): 60 kg from a poor household,
    40 kg from another, both at 40 yuan/kg, so the poor share is 60.00 %."""
    owner, cooperative, token = await member_with_token(session, region_code=region_code)
    made = await catalog_service.create_product(
        session, cooperative_id=cooperative.id, data={**WOLFBERRY_BOX, **(product or {})}
    )
    poor = await registered_household(session, cooperative, poor_since=dt.date(2019, 1, 1))
    other = await registered_household(session, cooperative, poor_since=None, name="李秀英")
    lot = await open_lot(session, cooperative, made)
    if poor_grams:
        await purchase(session, lot, poor, grams=poor_grams, price_per_kg=4000)
    if other_grams:
        await purchase(session, lot, other, grams=other_grams, price_per_kg=4000)
    return Supply(owner, cooperative, token, made, lot, poor, other)


def listing_body(supply: Supply, **overrides: Any) -> dict[str, Any]:
    """A valid create body (JSON-ready) for a fixed-price pickup listing of 50 boxes."""
    body: dict[str, Any] = {
        "lot_id": str(supply.lot.id),
        "unit_price_fen": 6800,
        "price_tiers": [
            {"min_quantity": 20, "unit_price_fen": 6500},
            {"min_quantity": 40, "unit_price_fen": 6200},
        ],
        "min_order_quantity": 5,
        "quantity": 50,
        "delivery_terms": "pickup",
        "pickup_hub": "靖远县电子商务公共服务中心仓库",
        "sale_mode": "fixed",
    }
    body.update(overrides)
    return body


def _service_data(body: dict[str, Any]) -> dict[str, Any]:
    """The create body as the router hands it to the service (model_dump of ListingCreate)."""
    from market.listings.schemas import ListingCreate

    return ListingCreate.model_validate(body).model_dump()


async def make_listing(
    session: AsyncSession, supply: Supply, *, publish: bool = True, **overrides: Any
) -> Listing:
    listing = await listings_service.create_listing(
        session,
        cooperative_id=supply.cooperative.id,
        data=_service_data(listing_body(supply, **overrides)),
        user_id=supply.owner.id,
    )
    if publish:
        listing = await listings_service.act(
            session,
            listing=listing,
            organisation=supply.cooperative,
            event="publish",
            user_id=supply.owner.id,
        )
    return listing


async def make_certification(
    session: AsyncSession, product: Product, *, valid_until: dt.date, number: str = "LB-18-2401"
) -> Certification:
    return await catalog_service.add_certification(
        session,
        product=product,
        data={
            "kind": "green_food",
            "certificate_number": number,
            "issuer": "中国绿色食品发展中心",
            "valid_until": valid_until,
        },
    )
