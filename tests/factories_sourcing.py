"""Factories for sourcing tests: products, households with poor periods, memberships, lots.

They write rows through the models directly so that sourcing tests do not depend on the
catalog and registry APIs (which have tests of their own)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from market.catalog.models import Product
from market.households.models import CooperativeMember, Household, PoorStatusPeriod
from market.organisations.models import Organisation
from market.sourcing import service as sourcing_service
from market.sourcing.models import Lot


async def make_product(
    session: AsyncSession,
    cooperative: Organisation,
    *,
    name_zh: str = "靖远枸杞 特级干果",
    unit: str = "kg",
    category_code: str = "dried_fruit_nuts",
) -> Product:
    product = Product(
        cooperative_id=cooperative.id,
        category_code=category_code,
        name_zh=name_zh,
        regional_brand="靖远枸杞",
        unit=unit,
        box_net_weight_g=500 if unit == "box" else None,
        shelf_life_days=365,
        storage_class="ambient",
    )
    session.add(product)
    await session.flush()
    return product


async def make_household(
    session: AsyncSession,
    cooperative: Organisation,
    *,
    poor: list[tuple[dt.date, dt.date | None]] | None = None,
    registered: bool = True,
    name: str = "张三",
    joined_on: dt.date = dt.date(2020, 1, 1),
) -> Household:
    """A household that is a member of `cooperative` since `joined_on`, poor in `poor`."""
    household = Household(
        registry_id=f"{cooperative.region_code}-{uuid.uuid4().hex[:10]}" if registered else None,
        county_code=cooperative.region_code,
        head_name=name,
        added_by_cooperative_id=None if registered else cooperative.id,
    )
    session.add(household)
    await session.flush()
    for valid_from, valid_until in poor or []:
        session.add(
            PoorStatusPeriod(
                household_id=household.id, valid_from=valid_from, valid_until=valid_until
            )
        )
    session.add(
        CooperativeMember(
            cooperative_id=cooperative.id, household_id=household.id, joined_on=joined_on
        )
    )
    await session.flush()
    return household


async def make_lot(session: AsyncSession, cooperative: Organisation, product: Product) -> Lot:
    return await sourcing_service.open_lot(
        session,
        cooperative_id=cooperative.id,
        county_code=cooperative.region_code,
        data={"product_id": product.id, "harvest_date": dt.date(2026, 8, 15), "grade": "特级"},
    )


async def buy(
    session: AsyncSession,
    lot: Lot,
    household: Household,
    *,
    quantity: int,
    price: int,
    on: dt.date,
) -> int:
    record = await sourcing_service.append_purchase(
        session,
        lot=lot,
        household_id=household.id,
        quantity=quantity,
        unit_price_fen=price,
        purchase_date=on,
        recorded_by_id=None,
    )
    return record.seq
