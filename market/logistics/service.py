"""Logistics estimates wherever a buyer sees a price: road distance from the cooperative's
county to the destination, freight by storage class and weight band (`rates.csv`, kept as
data), transit time, and whether the product stays fresh on the way.

The arithmetic is pure and integer (fen, grams, whole kilometres and days); `estimate_listing`
reads what it needs from the database."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.resources
import io
import math
import uuid
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncSession

from market.calendar import china_today
from market.catalog import service as catalog_service
from market.errors import Invalid
from market.listings import service as listings_service
from market.organisations import service as organisations_service
from market.regions import service as regions_service
from market.sourcing import service as sourcing_service

# roads are longer than the straight line between two county seats: ×1.3 is the usual
# detour factor for China's trunk network (tenths, to stay in integers)
ROAD_FACTOR_TENTHS = 13
STORAGE_CLASSES = ("ambient", "chilled", "frozen")


@dataclass(frozen=True)
class Rate:
    storage_class: str
    min_g: int
    max_g: int | None  # None: no upper bound
    base_fen: int
    fen_per_kg_100km: int
    km_per_day: int
    handling_days: int


def parse_rates(text: str) -> tuple[Rate, ...]:
    """The rate table from CSV (lines starting with # are comments). Each storage class needs
    contiguous weight bands from 0 kg, the last one open-ended."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    rates: list[Rate] = []
    for number, row in enumerate(csv.DictReader(io.StringIO("\n".join(lines))), start=2):
        try:
            rate = Rate(
                storage_class=row["storage_class"].strip(),
                min_g=int(row["min_kg"]) * 1000,
                max_g=int(row["max_kg"]) * 1000 if row["max_kg"].strip() else None,
                base_fen=int(row["base_fen"]),
                fen_per_kg_100km=int(row["fen_per_kg_100km"]),
                km_per_day=int(row["km_per_day"]),
                handling_days=int(row["handling_days"]),
            )
        except (KeyError, ValueError, AttributeError) as exc:
            raise ValueError(f"rates, data line {number}: {exc}") from exc
        if rate.km_per_day <= 0 or min(rate.base_fen, rate.fen_per_kg_100km) < 0:
            raise ValueError(f"rates, data line {number}: rates must be positive")
        rates.append(rate)
    for storage_class in STORAGE_CLASSES:
        bands = sorted(
            (r for r in rates if r.storage_class == storage_class), key=lambda r: r.min_g
        )
        edge: int | None = 0
        for band in bands:
            if edge is None or band.min_g != edge:
                raise ValueError(f"rates: the {storage_class} bands leave a gap or overlap")
            edge = band.max_g
        if not bands or edge is not None:
            raise ValueError(f"rates: the {storage_class} bands must end open-ended")
    return tuple(rates)


@lru_cache(maxsize=1)
def rates() -> tuple[Rate, ...]:
    text = importlib.resources.files("market.logistics").joinpath("rates.csv").read_text("utf-8")
    return parse_rates(text)


def rate_for(storage_class: str, weight_g: int) -> Rate:
    for rate in rates():
        if (
            rate.storage_class == storage_class
            and rate.min_g <= weight_g
            and (rate.max_g is None or weight_g < rate.max_g)
        ):
            return rate
    raise ValueError(f"no rate for {storage_class} at {weight_g} g")


def road_km(straight_km: float) -> int:
    return math.ceil(straight_km * ROAD_FACTOR_TENTHS / 10)


def freight_fen(rate: Rate, weight_g: int, km: int) -> int:
    """base + kg × (km / 100) × rate, rounded up to a whole fen, in integers."""
    variable = -(-(weight_g * km * rate.fen_per_kg_100km) // (1000 * 100))
    return rate.base_fen + variable


def transit_days(rate: Rate, km: int) -> int:
    return rate.handling_days + -(-km // rate.km_per_day)


@dataclass(frozen=True)
class Freshness:
    remaining_days: int | None  # shelf life left today; None when the lot has no date
    needed_days: int  # transit plus the margin
    suitable: bool
    reason: str | None


def freshness(
    *,
    shelf_life_days: int,
    made_on: dt.date | None,
    today: dt.date,
    transit: int,
    margin_days: int,
) -> Freshness:
    """Whether the goods arrive with at least `margin_days` of shelf life left. Without a
    harvest or production date the full shelf life is assumed, and said."""
    remaining = shelf_life_days - (today - made_on).days if made_on else None
    left = remaining if remaining is not None else shelf_life_days
    needed = transit + margin_days
    if left < needed:
        reason = (
            f"Only {max(left, 0)} days of shelf life are left; the journey takes {transit} "
            f"days and {margin_days} more must remain on arrival."
        )
        return Freshness(remaining, needed, False, reason)
    return Freshness(remaining, needed, True, None)


@dataclass(frozen=True)
class Estimate:
    origin_code: str
    destination_code: str
    straight_km: float
    road_km: int
    storage_class: str
    weight_g: int
    freight_fen: int
    transit_days: int
    remaining_shelf_life_days: int | None
    suitable: bool
    reason: str | None


def estimate(
    *,
    origin_code: str,
    destination_code: str,
    straight_km: float,
    storage_class: str,
    weight_g: int,
    shelf_life_days: int,
    made_on: dt.date | None,
    today: dt.date,
    margin_days: int,
) -> Estimate:
    km = road_km(straight_km)
    rate = rate_for(storage_class, weight_g)
    days = transit_days(rate, km)
    fresh = freshness(
        shelf_life_days=shelf_life_days,
        made_on=made_on,
        today=today,
        transit=days,
        margin_days=margin_days,
    )
    return Estimate(
        origin_code=origin_code,
        destination_code=destination_code,
        straight_km=round(straight_km, 1),
        road_km=km,
        storage_class=storage_class,
        weight_g=weight_g,
        freight_fen=freight_fen(rate, weight_g, km),
        transit_days=days,
        remaining_shelf_life_days=fresh.remaining_days,
        suitable=fresh.suitable,
        reason=fresh.reason,
    )


async def estimate_listing(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    destination_code: str,
    quantity: int,
    margin_days: int,
) -> Estimate:
    """The estimate for `quantity` units of sale of a listing shipped to a region."""
    listing = await listings_service.get_listing(session, listing_id=listing_id)
    product = await catalog_service.get_product(session, product_id=listing.product_id)
    lot = await sourcing_service.get_lot(session, lot_id=listing.lot_id)
    cooperative = await organisations_service.get_organisation(
        session, organisation_id=listing.cooperative_id
    )
    await regions_service.require_region(session, destination_code, field="destination")
    origin, _, straight = await regions_service.distance(
        session, cooperative.region_code, destination_code
    )
    if catalog_service.base_unit(product) == "piece":
        if product.box_net_weight_g is None:
            raise Invalid.field(
                "listing_id",
                "This product is sold by the piece without a weight per piece; ask the "
                "cooperative for a freight quote.",
                code="weight_unknown",
            )
        grams_per_unit = product.box_net_weight_g
    else:
        grams_per_unit = catalog_service.unit_size(product)
    return estimate(
        origin_code=origin.code,
        destination_code=destination_code,
        straight_km=straight,
        storage_class=product.storage_class,
        weight_g=grams_per_unit * quantity,
        shelf_life_days=product.shelf_life_days,
        made_on=lot.production_date or lot.harvest_date,
        today=china_today(),
        margin_days=margin_days,
    )
