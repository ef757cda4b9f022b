"""Logistics estimates: the rate table as data, integer arithmetic, freshness, the API."""

from __future__ import annotations

import datetime as dt

import pytest

from market.logistics import service
from tests.factories_listings import make_listing, make_supply


def test_the_shipped_rate_table_is_complete():
    table = service.rates()
    assert {r.storage_class for r in table} == set(service.STORAGE_CLASSES)
    # every weight has exactly one band per class
    for storage_class in service.STORAGE_CLASSES:
        for grams in (0, 4_999, 5_000, 29_999, 30_000, 499_999, 500_000, 10**9):
            assert service.rate_for(storage_class, grams).storage_class == storage_class


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("storage_class,min_kg,max_kg,base_fen,fen_per_kg_100km,km_per_day,handling_days\n"
         "ambient,0,5,100,1,500,1\nambient,6,,100,1,500,1", "gap or overlap"),
        ("storage_class,min_kg,max_kg,base_fen,fen_per_kg_100km,km_per_day,handling_days\n"
         "ambient,0,5,100,1,500,1", "open-ended"),
        ("storage_class,min_kg,max_kg,base_fen,fen_per_kg_100km,km_per_day,handling_days\n"
         "ambient,0,,x,1,500,1", "line 2"),
    ],
)  # fmt: skip
def test_a_broken_rate_table_is_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        service.parse_rates(text)


def test_freight_and_transit_are_whole_fen_and_days():
    rate = service.Rate("ambient", 5_000, 30_000, 1800, 22, 500, 1)
    # 10 kg over 1,416 km at 22 fen per kg per 100 km: 3,115.2 → 3,116 fen, plus the base
    assert service.freight_fen(rate, 10_000, 1416) == 1800 + 3116
    assert service.transit_days(rate, 1416) == 1 + 3
    assert service.road_km(1088.5) == 1416


def test_freshness_needs_transit_plus_margin():
    today = dt.date(2026, 11, 30)
    fresh = service.freshness(
        shelf_life_days=10, made_on=dt.date(2026, 11, 25), today=today, transit=3, margin_days=2
    )
    assert (fresh.remaining_days, fresh.needed_days, fresh.suitable) == (5, 5, True)
    stale = service.freshness(
        shelf_life_days=10, made_on=dt.date(2026, 11, 24), today=today, transit=3, margin_days=2
    )
    assert not stale.suitable
    assert stale.reason == (
        "Only 4 days of shelf life are left; the journey takes 3 days and 2 more must remain "
        "on arrival."
    )
    undated = service.freshness(
        shelf_life_days=4, made_on=None, today=today, transit=3, margin_days=2
    )
    assert undated.remaining_days is None and not undated.suitable


async def test_estimate_through_the_api(client, session):
    supply = await make_supply(session)  # 500 g boxes of wolfberry, ambient, Jingyuan
    listing = await make_listing(session, supply)
    response = await client.get(
        "/logistics/estimate",
        params={"listing_id": str(listing.id), "destination": "110000", "quantity": 20},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["origin_code"] == "620421" and body["destination_code"] == "110000"
    assert body["weight_g"] == 10_000
    assert body["storage_class"] == "ambient"
    assert abs(body["road_km"] - body["straight_km"] * 1.3) < 1  # the detour factor
    rate = service.rate_for("ambient", 10_000)
    assert body["freight_fen"] == service.freight_fen(rate, 10_000, body["road_km"])
    assert body["suitable"] is True and body["reason"] is None


async def test_fresh_produce_far_away_is_unsuitable(client, session):
    supply = await make_supply(
        session,
        product={
            "name_zh": "蒲江猕猴桃 红心",
            "unit": "kg",
            "box_net_weight_g": None,
            "shelf_life_days": 4,
            "storage_class": "chilled",
            "category_code": "fresh_fruit",
            "regional_brand": None,
        },
    )
    listing = await make_listing(session, supply)
    near = await client.get(
        "/logistics/estimate",
        params={"listing_id": str(listing.id), "destination": "620400", "quantity": 10},
    )
    far = await client.get(
        "/logistics/estimate",
        params={"listing_id": str(listing.id), "destination": "460200", "quantity": 10},
    )
    assert near.status_code == far.status_code == 200, (near.text, far.text)
    assert far.json()["suitable"] is False
    assert "shelf life" in far.json()["reason"]
    assert far.json()["transit_days"] > near.json()["transit_days"]


async def test_estimate_errors_name_the_field(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    unknown = await client.get(
        "/logistics/estimate",
        params={"listing_id": str(listing.id), "destination": "999999", "quantity": 1},
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "destination"
    zero = await client.get(
        "/logistics/estimate",
        params={"listing_id": str(listing.id), "destination": "110000", "quantity": 0},
    )
    assert zero.status_code == 422 and "quantity" in zero.json()["errors"][0]["field"]
    draft = await make_listing(session, supply, publish=False)
    hidden = await client.get(
        "/logistics/estimate",
        params={"listing_id": str(draft.id), "destination": "110000", "quantity": 1},
    )
    assert hidden.status_code == 404
