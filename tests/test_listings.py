"""Listings: terms, lifecycle, mass balance against the lot, the stock ledger under real
concurrency, access, and the public read."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from market.catalog.models import Certification
from market.errors import Conflict
from market.listings import service as listings_service
from market.listings import states
from market.listings.models import Listing, StockMovement
from market.organisations.models import Organisation
from tests.factories import bearer, make_user, member_with_token, token_for
from tests.factories_listings import (
    Supply,
    listing_body,
    make_certification,
    make_listing,
    make_supply,
)


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def listings_url(supply: Supply, *rest: object) -> str:
    return "/".join([f"/organisations/{supply.cooperative.id}/listings", *map(str, rest)])


async def create(client: httpx.AsyncClient, supply: Supply, **overrides: object) -> httpx.Response:
    return await client.post(
        listings_url(supply),
        headers=bearer(supply.token) | key(),
        json=listing_body(supply, **overrides),
    )


async def action(
    client: httpx.AsyncClient, supply: Supply, listing_id: object, verb: str
) -> httpx.Response:
    return await client.post(listings_url(supply, listing_id, verb), headers=bearer(supply.token))


async def movements(session: AsyncSession, listing_id: uuid.UUID) -> list[StockMovement]:
    rows = await session.scalars(
        select(StockMovement)
        .where(StockMovement.listing_id == listing_id)
        .order_by(StockMovement.id)
    )
    return list(rows)


async def count(session: AsyncSession, model: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def tier(min_quantity: int, unit_price_fen: int) -> dict[str, int]:
    return {"min_quantity": min_quantity, "unit_price_fen": unit_price_fen}


def problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    return body


# ---------------------------------------------------------------- the transition table


def test_lifecycle_table():
    assert states.transition("draft", "publish") == "active"
    assert states.transition("active", "pause") == "paused"
    assert states.transition("sold_out", "pause") == "paused"
    assert states.transition("paused", "resume") == "active"
    for status in ("draft", "active", "paused", "sold_out"):
        assert states.transition(status, "close") == "closed"
    # closed is final
    for event in states.TRANSITIONS:
        with pytest.raises(Conflict) as refused:
            states.transition("closed", event)
        assert refused.value.code == "invalid_transition"
    with pytest.raises(Conflict, match="allowed from: draft"):
        states.transition("active", "publish")
    with pytest.raises(Conflict):
        states.transition("draft", "pause")


def test_stock_drives_sold_out_and_back():
    assert states.settle("active", 0) == "sold_out"
    assert states.settle("sold_out", 3) == "active"
    assert states.settle("active", 3) == "active"
    for status in ("draft", "paused", "closed"):
        assert states.settle(status, 0) == status
        assert states.settle(status, 5) == status
    # resuming or publishing with nothing left lands on sold_out
    assert states.act("paused", "resume", 0) == "sold_out"
    assert states.act("draft", "publish", 0) == "sold_out"
    assert states.act("paused", "resume", 2) == "active"


# ---------------------------------------------------------------- creating and mass balance


async def test_create_a_draft_from_a_lot(client, session):
    supply = await make_supply(session)
    response = await create(client, supply)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "draft"
    assert body["title_zh"] == supply.product.name_zh  # defaulted from the product
    assert body["unit_size"] == 500  # grams in one box
    assert (body["quantity_listed"], body["quantity_available"]) == (50, 50)
    assert (body["quantity_reserved"], body["quantity_sold"]) == (0, 0)
    assert body["price_tiers"] == [
        {"min_quantity": 20, "unit_price_fen": 6500},
        {"min_quantity": 40, "unit_price_fen": 6200},
    ]
    assert body["published_at"] is None
    listing_id = uuid.UUID(body["id"])
    [listed] = await movements(session, listing_id)
    assert (listed.kind, listed.quantity, listed.available_after) == ("list", 50, 50)
    assert listed.reference == supply.lot.trace_code
    assert listed.created_by_id == supply.owner.id

    read = await client.get(listings_url(supply, listing_id), headers=bearer(supply.token))
    assert read.status_code == 200
    assert read.json() == body


async def test_creating_needs_an_idempotency_key(client, session):
    supply = await make_supply(session)
    response = await client.post(
        listings_url(supply), headers=bearer(supply.token), json=listing_body(supply)
    )
    problem(response, 422, "idempotency_key_required")
    assert await count(session, Listing) == 0


async def test_listing_more_than_the_lot_holds_is_refused_and_nothing_is_written(client, session):
    supply = await make_supply(session)  # 100 kg = 200 boxes
    body = problem(await create(client, supply, quantity=201), 409, "mass_balance")
    assert "100000 g" in body["detail"]  # what the lot holds
    assert "200 box" in body["detail"]  # what is left, in units of sale
    assert "100500 g (201 box)" in body["detail"]  # what was asked
    assert await count(session, Listing) == 0
    assert await count(session, StockMovement) == 0
    # exactly what the lot holds is fine
    assert (await create(client, supply, quantity=200)).status_code == 201


async def test_two_listings_from_one_lot_sum_up(client, session):
    supply = await make_supply(session)
    assert (await create(client, supply, quantity=120)).status_code == 201
    assert (await create(client, supply, quantity=80, price_tiers=[])).status_code == 201
    assert await listings_service.committed_base_quantity(session, supply.lot.id) == 100_000
    body = problem(
        await create(client, supply, quantity=1, min_order_quantity=1), 409, "mass_balance"
    )
    assert "0 g (0 box) are left" in body["detail"]
    assert await count(session, Listing) == 2


async def test_committed_base_quantity_of_open_and_closed_listings(session):
    supply = await make_supply(session)
    first = await make_listing(session, supply, quantity=100)
    second = await make_listing(session, supply, quantity=30)
    assert await listings_service.committed_base_quantity(session, supply.lot.id) == 130 * 500

    await listings_service.reserve(session, listing_id=first.id, quantity=10, reason="order A")
    await listings_service.sell(session, listing_id=first.id, quantity=4, reason="order A paid")
    first = await listings_service.act(
        session, listing=first, organisation=supply.cooperative, event="close", user_id=None
    )
    assert first.status == "closed"
    # closed: only the 6 reserved and 4 sold stay committed
    assert (first.quantity_listed, first.quantity_available) == (10, 0)
    assert (first.quantity_reserved, first.quantity_sold) == (6, 4)
    assert await listings_service.committed_base_quantity(session, supply.lot.id) == (10 + 30) * 500

    # a reservation released on a closed listing leaves the stock instead of coming back
    stock = await listings_service.release(
        session, listing_id=first.id, quantity=6, reason="order A cancelled"
    )
    assert (stock.listed, stock.available, stock.reserved, stock.sold) == (4, 0, 0, 4)
    assert await listings_service.committed_base_quantity(session, supply.lot.id) == (4 + 30) * 500
    kinds = [(m.kind, m.quantity, m.available_after) for m in await movements(session, first.id)]
    assert kinds == [
        ("list", 100, 100),
        ("reserve", -10, 90),
        ("sell", -4, 90),
        ("close", -90, 0),
        ("release", 6, 6),
        ("close", -6, 0),
    ]
    assert await listings_service.committed_base_quantity(session, second.lot_id) == 34 * 500
    assert await listings_service.committed_base_quantity(session, uuid.uuid4()) == 0


async def test_a_lot_of_another_cooperative_cannot_be_listed(client, session):
    supply = await make_supply(session)
    other = await make_supply(session)
    response = await create(client, supply, lot_id=str(other.lot.id))
    body = problem(response, 422, "unknown_lot")
    assert body["errors"][0]["field"] == "lot_id"
    assert await count(session, Listing) == 0


# ---------------------------------------------------------------- validation


async def test_price_tier_errors_name_the_field_and_nothing_is_written(client, session):
    supply = await make_supply(session)
    cases = [
        (
            [
                {"min_quantity": 20, "unit_price_fen": 6500},
                {"min_quantity": 20, "unit_price_fen": 6000},
            ],
            "price_tiers.1.min_quantity",
        ),
        (
            [
                {"min_quantity": 20, "unit_price_fen": 6500},
                {"min_quantity": 40, "unit_price_fen": 6500},
            ],
            "price_tiers.1.unit_price_fen",
        ),
        ([{"min_quantity": 20, "unit_price_fen": 6800}], "price_tiers.0.unit_price_fen"),
        ([{"min_quantity": 5, "unit_price_fen": 6000}], "price_tiers.0.min_quantity"),
    ]
    for tiers, field in cases:
        body = problem(await create(client, supply, price_tiers=tiers), 422, "invalid_price_tiers")
        assert [e["field"] for e in body["errors"]] == [field], body
        assert field in body["detail"]
    # schema-level: a tier from 1 unit is no tier
    response = await create(client, supply, price_tiers=[{"min_quantity": 1, "unit_price_fen": 1}])
    body = problem(response, 422, "validation_failed")
    assert {e["field"] for e in body["errors"]} == {"price_tiers.0.min_quantity"}
    assert await count(session, Listing) == 0


async def test_sale_mode_delivery_and_window_rules(client, session):
    supply = await make_supply(session)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    cases = [
        ({"sale_mode": "auction", "price_tiers": []}, "auction_closes_at"),
        (
            {"sale_mode": "auction", "price_tiers": [], "auction_closes_at": past},
            "auction_closes_at",
        ),
        ({"sale_mode": "auction", "auction_closes_at": soon}, "price_tiers"),
        ({"sale_mode": "fixed", "auction_closes_at": soon}, "auction_closes_at"),
        ({"sale_mode": "negotiable", "reserve_price_fen": 5000}, "reserve_price_fen"),
        ({"delivery_terms": "pickup", "pickup_hub": None}, "pickup_hub"),
        ({"delivery_terms": "delivered"}, "pickup_hub"),
        ({"valid_until": past}, "valid_until"),
        ({"min_order_quantity": 60, "price_tiers": []}, "min_order_quantity"),
    ]
    for overrides, field in cases:
        response = await create(client, supply, **overrides)
        assert response.status_code == 422, (overrides, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], overrides
    naive = await create(client, supply, valid_until="2027-01-01T00:00:00")
    assert problem(naive, 422, "validation_failed")["errors"][0]["field"] == "valid_until"
    assert await count(session, Listing) == 0

    auction = await create(
        client,
        supply,
        sale_mode="auction",
        price_tiers=[],
        auction_closes_at=soon,
        reserve_price_fen=6000,
        delivery_terms="delivered",
        pickup_hub=None,
    )
    assert auction.status_code == 201, auction.text
    assert auction.json()["reserve_price_fen"] == 6000


async def test_patch_changes_terms_but_not_quantity(client, session):
    supply = await make_supply(session)
    listing_id = (await create(client, supply)).json()["id"]
    url = listings_url(supply, listing_id)
    response = await client.patch(
        url,
        headers=bearer(supply.token),
        json={
            "unit_price_fen": 7000,
            "price_tiers": [{"min_quantity": 100, "unit_price_fen": 6000}],
            "title_zh": "靖远枸杞 新货",
            "description": "头茬果",
            "valid_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unit_price_fen"] == 7000
    assert body["price_tiers"] == [{"min_quantity": 100, "unit_price_fen": 6000}]
    assert (body["title_zh"], body["description"]) == ("靖远枸杞 新货", "头茬果")
    assert body["quantity_available"] == 50

    # a price under the existing tier is refused, naming the tier
    low = await client.patch(url, headers=bearer(supply.token), json={"unit_price_fen": 5000})
    assert problem(low, 422, "invalid_price_tiers")["errors"][0]["field"] == (
        "price_tiers.0.unit_price_fen"
    )
    quantity = await client.patch(url, headers=bearer(supply.token), json={"quantity": 10})
    assert problem(quantity, 422, "validation_failed")["errors"][0]["field"] == "quantity"
    null = await client.patch(url, headers=bearer(supply.token), json={"title_zh": None})
    assert problem(null, 422, "not_null")["errors"][0]["field"] == "title_zh"
    after = (await client.get(url, headers=bearer(supply.token))).json()
    assert after["unit_price_fen"] == 7000 and after["title_zh"] == "靖远枸杞 新货"
    # the same min_quantity at a new price, and an extra tier
    tiers = [tier(100, 6500), tier(300, 6000)]
    response = await client.patch(url, headers=bearer(supply.token), json={"price_tiers": tiers})
    assert response.status_code == 200, response.text
    assert response.json()["price_tiers"] == tiers
    cleared = await client.patch(url, headers=bearer(supply.token), json={"price_tiers": []})
    assert cleared.json()["price_tiers"] == []


# ---------------------------------------------------------------- lifecycle through the API


async def test_lifecycle_through_the_api(client, session):
    supply = await make_supply(session)
    listing_id = (
        await create(client, supply, quantity=10, min_order_quantity=1, price_tiers=[])
    ).json()["id"]
    published = await action(client, supply, listing_id, "publish")
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "active"
    assert published.json()["published_at"] is not None
    problem(await action(client, supply, listing_id, "publish"), 409, "invalid_transition")

    assert (await action(client, supply, listing_id, "pause")).json()["status"] == "paused"
    assert (await client.get(f"/listings/{listing_id}")).status_code == 404
    assert (await action(client, supply, listing_id, "resume")).json()["status"] == "active"

    # stock drives sold_out and back
    url = listings_url(supply, listing_id, "stock-adjustments")
    headers = bearer(supply.token)
    down = await client.post(url, headers=headers | key(), json={"quantity": -10, "reason": "盘点"})
    assert down.status_code == 201, down.text
    assert down.json()["listing"]["status"] == "sold_out"
    assert (await client.get(f"/listings/{listing_id}")).status_code == 404
    up = await client.post(url, headers=headers | key(), json={"quantity": 4, "reason": "补货"})
    assert up.json()["listing"]["status"] == "active"
    assert up.json()["listing"]["quantity_available"] == 4

    closed = await action(client, supply, listing_id, "close")
    assert closed.json()["status"] == "closed"
    assert (closed.json()["quantity_listed"], closed.json()["quantity_available"]) == (0, 0)
    problem(await action(client, supply, listing_id, "resume"), 409, "invalid_transition")
    again = await client.post(url, headers=headers | key(), json={"quantity": 1, "reason": "再来"})
    problem(again, 409, "listing_closed")
    patch = await client.patch(
        listings_url(supply, listing_id), headers=headers, json={"unit_price_fen": 100}
    )
    problem(patch, 409, "listing_closed")

    ledger = await client.get(listings_url(supply, listing_id, "stock-movements"), headers=headers)
    assert [(m["kind"], m["quantity"]) for m in ledger.json()["items"]] == [
        ("list", 10),
        ("adjust", -10),
        ("adjust", 4),
        ("close", -4),
    ]
    listings = await client.get(listings_url(supply), headers=headers, params={"status": "closed"})
    assert [x["id"] for x in listings.json()["items"]] == [listing_id]
    assert (
        await client.get(listings_url(supply), headers=headers, params={"status": "active"})
    ).json()["items"] == []


async def test_an_unverified_cooperative_cannot_publish(client, session):
    supply = await make_supply(session)
    listing_id = (await create(client, supply)).json()["id"]
    await session.execute(
        update(Organisation)
        .where(Organisation.id == supply.cooperative.id)
        .values(verification_status="pending")
    )
    problem(await action(client, supply, listing_id, "publish"), 403, "not_verified")


# ---------------------------------------------------------------- stock adjustments


async def test_stock_adjustments_are_idempotent(client, session):
    supply = await make_supply(session)
    listing_id = (await create(client, supply)).json()["id"]
    url = listings_url(supply, listing_id, "stock-adjustments")
    headers = bearer(supply.token) | {"Idempotency-Key": "stocktake-2026-11-30"}
    payload = {"quantity": -3, "reason": "破损 3 盒", "reference": "PD-0412"}
    first = await client.post(url, headers=headers, json=payload)
    assert first.status_code == 201, first.text
    assert first.json()["movement"]["kind"] == "adjust"
    assert first.json()["movement"]["available_after"] == 47
    replay = await client.post(url, headers=headers, json=payload)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    adjustments = [m for m in await movements(session, uuid.UUID(listing_id)) if m.kind == "adjust"]
    assert len(adjustments) == 1
    available = await session.scalar(
        select(Listing.quantity_available).where(Listing.id == uuid.UUID(listing_id))
    )
    assert available == 47

    no_key = await client.post(url, headers=bearer(supply.token), json=payload)
    problem(no_key, 422, "idempotency_key_required")
    other_body = await client.post(url, headers=headers, json={**payload, "quantity": -4})
    problem(other_body, 422, "idempotency_key_mismatch")


async def test_stock_adjustments_respect_stock_and_the_lot(client, session):
    supply = await make_supply(session)
    listing_id = (await create(client, supply, quantity=150)).json()["id"]
    url = listings_url(supply, listing_id, "stock-adjustments")
    headers = bearer(supply.token)
    too_many = await client.post(
        url, headers=headers | key(), json={"quantity": -151, "reason": "x" * 5}
    )
    body = problem(too_many, 409, "insufficient_stock")
    assert "Only 150" in body["detail"]
    beyond = await client.post(
        url, headers=headers | key(), json={"quantity": 51, "reason": "补货入库"}
    )
    body = problem(beyond, 409, "mass_balance")
    assert "50 box" in body["detail"]
    zero = await client.post(url, headers=headers | key(), json={"quantity": 0, "reason": "无变化"})
    assert problem(zero, 422, "invalid")["errors"][0]["field"] == "quantity"
    fits = await client.post(
        url, headers=headers | key(), json={"quantity": 50, "reason": "补货入库"}
    )
    assert fits.status_code == 201
    assert fits.json()["listing"]["quantity_listed"] == 200
    assert [m.kind for m in await movements(session, uuid.UUID(listing_id))] == ["list", "adjust"]


async def test_concurrent_adjustments_never_exceed_the_lot(committing_client, committing_session):
    """Ten +1 adjustments at once on a lot with room for five: the lot's lock serialises the
    mass-balance checks, so exactly five get through."""
    supply = await make_supply(committing_session)
    listing = await make_listing(committing_session, supply, quantity=195, publish=False)
    await committing_session.commit()
    url = listings_url(supply, listing.id, "stock-adjustments")
    responses = await asyncio.gather(
        *[
            committing_client.post(
                url, headers=bearer(supply.token) | key(), json={"quantity": 1, "reason": "补货"}
            )
            for _ in range(10)
        ]
    )
    assert sorted(r.status_code for r in responses) == [201] * 5 + [409] * 5
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"mass_balance"}
    listed = await committing_session.scalar(
        select(Listing.quantity_listed).where(Listing.id == listing.id)
    )
    assert listed == 200
    # the public read on the real engine (an autocommit connection from the pool)
    await committing_client.post(
        listings_url(supply, listing.id, "publish"), headers=bearer(supply.token)
    )
    for _ in range(3):
        public = await committing_client.get(f"/listings/{listing.id}")
        assert public.status_code == 200, public.text
        assert public.json()["quantity_available"] == 200


# ---------------------------------------------------------------- reservations


async def test_fifty_concurrent_reservations_never_oversell(
    committing_session: AsyncSession, engine: AsyncEngine
):
    supply = await make_supply(committing_session)
    listing = await make_listing(
        committing_session, supply, quantity=20, min_order_quantity=1, price_tiers=[]
    )
    await committing_session.commit()
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def reserve_one(n: int) -> str:
        async with maker() as session:
            try:
                await listings_service.reserve(
                    session,
                    listing_id=listing.id,
                    quantity=1,
                    reason="buyer order",
                    reference=f"order-{n}",
                )
                await session.commit()
                return "ok"
            except Conflict as refused:
                await session.rollback()
                return refused.code

    outcomes = await asyncio.gather(*[reserve_one(n) for n in range(50)])
    assert outcomes.count("ok") == 20
    assert set(outcomes) == {"ok", "insufficient_stock"}

    row = (
        await committing_session.execute(
            select(Listing)
            .where(Listing.id == listing.id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    assert (row.quantity_available, row.quantity_reserved, row.status) == (0, 20, "sold_out")
    reserves = [m for m in await movements(committing_session, listing.id) if m.kind == "reserve"]
    assert len(reserves) == 20
    assert all(m.quantity == -1 for m in reserves)
    assert sorted(m.available_after for m in reserves) == list(range(20))
    assert len({m.reference for m in reserves}) == 20

    # the database itself refuses a negative availability, whatever the code path
    with pytest.raises(IntegrityError, match="available_not_negative"):
        async with maker() as session:
            await session.execute(
                text(
                    "UPDATE listing SET quantity_available = -1, quantity_reserved = 21 "
                    "WHERE id = :id"
                ),
                {"id": listing.id},
            )


async def test_reserve_release_and_sell(session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply, quantity=10, publish=False)
    with pytest.raises(Conflict) as refused:
        await listings_service.reserve(session, listing_id=listing.id, quantity=1, reason="x")
    assert refused.value.code == "listing_not_active"
    listing = await listings_service.act(
        session, listing=listing, organisation=supply.cooperative, event="publish", user_id=None
    )
    stock = await listings_service.reserve(
        session, listing_id=listing.id, quantity=10, reason="order 1", reference="O-1"
    )
    assert (stock.available, stock.reserved, stock.status) == (0, 10, "sold_out")
    with pytest.raises(Conflict) as refused:
        await listings_service.reserve(session, listing_id=listing.id, quantity=1, reason="x")
    assert refused.value.code == "insufficient_stock"
    # the refusal left the transaction usable
    stock = await listings_service.release(
        session, listing_id=listing.id, quantity=3, reason="order 1 reduced"
    )
    assert (stock.available, stock.reserved, stock.status) == (3, 7, "active")
    stock = await listings_service.sell(session, listing_id=listing.id, quantity=7, reason="paid")
    assert (stock.listed, stock.available, stock.reserved, stock.sold) == (10, 3, 0, 7)
    with pytest.raises(Conflict) as refused:
        await listings_service.sell(session, listing_id=listing.id, quantity=1, reason="x")
    assert refused.value.code == "insufficient_reserved"
    with pytest.raises(Conflict) as refused:
        await listings_service.reserve(session, listing_id=listing.id, quantity=4, reason="x")
    assert refused.value.code == "insufficient_stock"
    assert "Only 3" in refused.value.detail

    # paused listings take no reservations; neither do listings outside their window
    await listings_service.act(
        session, listing=listing, organisation=supply.cooperative, event="pause", user_id=None
    )
    with pytest.raises(Conflict) as refused:
        await listings_service.reserve(session, listing_id=listing.id, quantity=1, reason="x")
    assert refused.value.code == "listing_not_active"
    later = await make_listing(
        session,
        supply,
        quantity=5,
        valid_from=(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
    )
    with pytest.raises(Conflict) as refused:
        await listings_service.reserve(session, listing_id=later.id, quantity=1, reason="x")
    assert refused.value.code == "listing_not_open"


# ---------------------------------------------------------------- access


async def test_other_cooperatives_get_404(client, session):
    supply = await make_supply(session)
    listing_id = (await create(client, supply)).json()["id"]
    _, other_coop, other_token = await member_with_token(session)
    theirs = bearer(other_token)
    mine_path = listings_url(supply, listing_id)
    # through the owner's organisation: not a member
    assert (await client.get(mine_path, headers=theirs)).status_code == 404
    assert (await client.get(listings_url(supply), headers=theirs)).status_code == 404
    assert (
        await client.patch(mine_path, headers=theirs, json={"unit_price_fen": 1})
    ).status_code == 404
    assert (await client.post(f"{mine_path}/publish", headers=theirs)).status_code == 404
    adjust = await client.post(
        f"{mine_path}/stock-adjustments",
        headers=theirs | key(),
        json={"quantity": -1, "reason": "偷改"},
    )
    assert adjust.status_code == 404
    # through their own organisation: no such listing there
    their_path = f"/organisations/{other_coop.id}/listings/{listing_id}"
    problem(await client.get(their_path, headers=theirs), 404, "not_found")
    problem(await client.post(f"{their_path}/close", headers=theirs), 404, "not_found")
    problem(
        await client.post(
            f"{their_path}/stock-adjustments",
            headers=theirs | key(),
            json={"quantity": -1, "reason": "偷改"},
        ),
        404,
        "not_found",
    )
    row = await session.scalar(select(Listing).where(Listing.id == uuid.UUID(listing_id)))
    assert row is not None and row.status == "draft" and row.quantity_available == 50


async def test_viewers_read_and_buyers_cannot_list(client, session):
    supply = await make_supply(session)
    listing_id = (await create(client, supply)).json()["id"]
    viewer = await make_user(session)
    from tests.factories import add_member

    await add_member(session, supply.cooperative, viewer, "viewer")
    viewer_token = bearer(await token_for(session, viewer))
    assert (
        await client.get(listings_url(supply, listing_id), headers=viewer_token)
    ).status_code == 200
    problem(
        await client.post(listings_url(supply, listing_id, "pause"), headers=viewer_token),
        403,
        "role_too_low",
    )
    _, buyer, buyer_token = await member_with_token(session, kind="buyer", region_code="120116")
    response = await client.get(f"/organisations/{buyer.id}/listings", headers=bearer(buyer_token))
    problem(response, 403, "not_a_cooperative")


# ---------------------------------------------------------------- the public


async def test_the_public_sees_only_active_listings(client, session):
    supply = await make_supply(session)
    draft = await make_listing(session, supply, quantity=10, publish=False)
    active = await make_listing(session, supply, quantity=10)
    paused = await make_listing(session, supply, quantity=10)
    await listings_service.act(
        session, listing=paused, organisation=supply.cooperative, event="pause", user_id=None
    )
    future = await make_listing(
        session,
        supply,
        quantity=10,
        valid_from=(dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat(),
    )
    closed = await make_listing(session, supply, quantity=10)
    await listings_service.act(
        session, listing=closed, organisation=supply.cooperative, event="close", user_id=None
    )
    sold_out = await make_listing(session, supply, quantity=1, min_order_quantity=1, price_tiers=[])
    await listings_service.reserve(session, listing_id=sold_out.id, quantity=1, reason="order")

    assert (await client.get(f"/listings/{active.id}")).status_code == 200
    for hidden in (draft, paused, future, closed, sold_out):
        problem(await client.get(f"/listings/{hidden.id}"), 404, "not_found")
    problem(await client.get(f"/listings/{uuid.uuid4()}"), 404, "not_found")
    page = await client.get("/listings")
    assert page.status_code == 200
    assert [x["id"] for x in page.json()["items"]] == [str(active.id)]
    # the cooperative still sees all of its own
    own = await client.get(listings_url(supply), headers=bearer(supply.token))
    assert len(own.json()["items"]) == 6


async def test_public_listing_document(client, session):
    supply = await make_supply(session)
    certificate = await make_certification(
        session, supply.product, valid_until=dt.date(2028, 6, 30)
    )
    closes = dt.datetime.now(dt.UTC) + dt.timedelta(days=5)
    listing = await make_listing(
        session,
        supply,
        quantity=40,
        sale_mode="auction",
        price_tiers=[],
        auction_closes_at=closes.isoformat(),
        reserve_price_fen=6000,
        certification_ids=[str(certificate.id)],
    )
    response = await client.get(f"/listings/{listing.id}")  # no sign-in
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["title_zh"] == "靖远枸杞 特级 500g 礼盒"
    assert body["cooperative"] == {
        "id": str(supply.cooperative.id),
        "name_zh": supply.cooperative.name_zh,
        "name_en": None,
    }
    assert body["county"] == {"code": "620421", "name_zh": "靖远县"}
    assert body["product"]["unit"] == "box"
    assert body["product"]["storage_class"] == "ambient"
    assert body["product"]["shelf_life_days"] == 540
    assert body["product"]["box_net_weight_g"] == 500
    assert body["sale_mode"] == "auction"
    assert body["auction_closes_at"].endswith("Z")
    assert dt.datetime.fromisoformat(body["auction_closes_at"]) == closes
    assert "reserve_price_fen" not in body and "bids" not in body
    assert body["quantity_available"] == 40
    assert body["min_order_quantity"] == 5
    assert body["price_tiers"] == []
    assert body["delivery_terms"] == "pickup"
    assert body["pickup_hub"] == "靖远县电子商务公共服务中心仓库"
    assert body["trace_code"] == supply.lot.trace_code
    assert body["poor_share_bp"] == 6000  # 60 kg of 100 kg at the same price
    assert body["certification_warning"] is False
    assert body["certifications"] == [
        {
            "id": str(certificate.id),
            "kind": "green_food",
            "certificate_number": "LB-18-2401",
            "issuer": "中国绿色食品发展中心",
            "valid_until": "2028-06-30",
            "is_valid": True,
        }
    ]
    # the same document validates against the declared schema, and the list shows it too
    from market.listings.schemas import PublicListingRead

    PublicListingRead.model_validate(body)
    listed = (await client.get("/listings")).json()["items"]
    assert listed == [body]


async def test_poor_share_is_zero_without_poor_records_and_null_without_value(client, session):
    supply = await make_supply(session)
    from tests.factories_listings import open_lot, purchase

    nobody_poor = await open_lot(session, supply.cooperative, supply.product)
    await purchase(session, nobody_poor, supply.other, grams=5_000, price_per_kg=4000)
    listing = await make_listing(session, supply, quantity=10, lot_id=str(nobody_poor.id))
    assert (await client.get(f"/listings/{listing.id}")).json()["poor_share_bp"] == 0
    # goods handed over for nothing: no purchase value, so no share (null, not 0 %)
    donated = await open_lot(session, supply.cooperative, supply.product)
    await purchase(session, donated, supply.poor, grams=5_000, price_per_kg=0)
    listing = await make_listing(session, supply, quantity=10, lot_id=str(donated.id))
    assert (await client.get(f"/listings/{listing.id}")).json()["poor_share_bp"] is None


async def test_certification_warning_when_a_claimed_certificate_expires(client, session):
    supply = await make_supply(session)
    certificate = await make_certification(
        session, supply.product, valid_until=dt.date(2027, 12, 31)
    )
    listing = await make_listing(session, supply, certification_ids=[str(certificate.id)])
    draft = await make_listing(
        session, supply, publish=False, certification_ids=[str(certificate.id)]
    )
    before = (await client.get(f"/listings/{listing.id}")).json()
    assert before["certification_warning"] is False
    # time passes: the certificate expires
    await session.execute(
        update(Certification)
        .where(Certification.id == certificate.id)
        .values(valid_until=dt.date(2026, 1, 31))
    )
    after = (await client.get(f"/listings/{listing.id}")).json()
    assert after["certification_warning"] is True
    assert after["certifications"][0]["is_valid"] is False
    own = await client.get(listings_url(supply, listing.id), headers=bearer(supply.token))
    assert own.json()["certification_warning"] is True
    # a draft claiming it can no longer be published
    refused = problem(
        await action(client, supply, draft.id, "publish"), 409, "certification_expired"
    )
    assert str(certificate.id) in refused["detail"]

    # an expired or foreign certificate cannot be claimed in the first place
    response = await create(client, supply, certification_ids=[str(certificate.id)])
    body = problem(response, 422, "expired_certification")
    assert body["errors"][0]["field"] == "certification_ids.0"
    assert "2026-01-31" in body["detail"]
    other = await make_supply(session)
    foreign = await make_certification(session, other.product, valid_until=dt.date(2029, 1, 1))
    response = await create(client, supply, certification_ids=[str(foreign.id)])
    assert problem(response, 422, "unknown_certification")["errors"][0]["field"] == (
        "certification_ids.0"
    )


async def test_public_filters(client, session):
    jingyuan = await make_supply(session)  # 620421 靖远县, dried fruit
    beijing = await make_supply(
        session,
        region_code="110105",
        product={
            "name_zh": "京郊小米",
            "category_code": "grains",
            "unit": "kg",
            "box_net_weight_g": None,
        },
    )
    fixed = await make_listing(session, jingyuan, quantity=10)
    negotiable = await make_listing(session, jingyuan, quantity=10, sale_mode="negotiable")
    grains = await make_listing(session, beijing, quantity=10)

    async def ids(**params: str) -> set[str]:
        response = await client.get("/listings", params=params)
        assert response.status_code == 200, response.text
        return {x["id"] for x in response.json()["items"]}

    assert await ids() == {str(fixed.id), str(negotiable.id), str(grains.id)}
    assert await ids(category="grains") == {str(grains.id)}
    assert await ids(category="dried_fruit_nuts") == {str(fixed.id), str(negotiable.id)}
    for prefix in ("62", "620000", "6204", "620400", "620421"):
        assert await ids(county_code=prefix) == {str(fixed.id), str(negotiable.id)}, prefix
    assert await ids(county_code="11") == {str(grains.id)}
    assert await ids(sale_mode="negotiable") == {str(negotiable.id)}
    assert await ids(sale_mode="auction") == set()
    problem(await client.get("/listings", params={"county_code": "62x"}), 422, "validation_failed")

    # pagination: newest published first, two pages
    first = (await client.get("/listings", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = (
        await client.get("/listings", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    assert [x["id"] for x in first["items"] + second["items"]] == [
        str(grains.id),
        str(negotiable.id),
        str(fixed.id),
    ]


# ---------------------------------------------------------------- the hot public read


def drop_plain_route(app: Any, path: str) -> None:
    """Remove the plain Starlette route for `path`, after checking that it is in front of
    the routers (so it wins the match) and that the FastAPI route stays documented."""
    from starlette.routing import Route

    routes = app.router.routes
    plain = [i for i, r in enumerate(routes) if type(r) is Route and r.path == path]
    assert len(plain) == 1 and all(type(r) is Route for r in routes[: plain[0]])
    assert path in app.openapi()["paths"]
    del routes[plain[0]]


def _without_request_id(response: httpx.Response) -> tuple[int, str, dict]:
    body = response.json()
    body.pop("request_id", None)
    return response.status_code, response.headers["content-type"], body


async def test_public_read_fast_route_answers_as_the_fastapi_route(
    client, session, connection, settings, engine
):
    """The plain Starlette route in front answers byte for byte what the FastAPI route (kept
    for the OpenAPI document) answers: the document, 404 and 422 problems."""
    from tests.conftest import _rolled_back_maker, build_app

    supply = await make_supply(session)
    certificate = await make_certification(
        session, supply.product, valid_until=dt.date(2028, 6, 30)
    )
    listing = await make_listing(session, supply, certification_ids=[str(certificate.id)])
    draft = await make_listing(session, supply, publish=False)

    app = build_app(settings, _rolled_back_maker(connection), engine)
    drop_plain_route(app, "/listings/{listing_id}")  # only the FastAPI route is left
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as fastapi:
        for path in (
            f"/listings/{listing.id}",
            f"/listings/{str(listing.id).replace('-', '').upper()}",
            f"/listings/{draft.id}",
            f"/listings/{uuid.uuid4()}",
            "/listings/not-a-uuid",
            "/listings/123",
        ):
            fast, slow = await client.get(path), await fastapi.get(path)
            assert fast.headers["x-request-id"]
            assert _without_request_id(fast) == _without_request_id(slow), path
            if fast.status_code == 200:
                assert fast.content == slow.content

    body = problem(await client.get(f"/listings/{draft.id}"), 404, "not_found")
    assert body["detail"] == "No such listing, or it is not on sale now."
    assert body["instance"] == f"/listings/{draft.id}"
    assert body["request_id"]
    body = problem(await client.get("/listings/not-a-uuid"), 422, "validation_failed")
    assert body["detail"] == "Some fields are not valid: listing_id"
    assert [(e["field"], e["in"], e["type"]) for e in body["errors"]] == [
        ("listing_id", "path", "uuid_parsing")
    ]
    assert (await client.post(f"/listings/{listing.id}")).status_code == 405


async def test_public_read_on_asyncpg_is_the_same_statement_and_document(
    client, session, connection, settings, engine
):
    """The asyncpg form of PUBLIC_ONE_SQL is the string the engine sends for it, and the
    asyncpg path (production: the lifespan's pool) answers the same document and bytes."""
    from sqlalchemy import event

    from tests.conftest import _rolled_back_maker, build_app

    supply = await make_supply(session)
    certificate = await make_certification(
        session, supply.product, valid_until=dt.date(2028, 6, 30)
    )
    listing = await make_listing(session, supply, certification_ids=[str(certificate.id)])

    sent: list[tuple[str, object]] = []

    def record(*args: object) -> None:
        sent.append((args[2], args[3]))  # type: ignore[arg-type]

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        through_sqlalchemy = await listings_service.public_listing(connection, listing.id)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(sent) == 1
    statement, parameters = sent[0]
    assert statement == listings_service.PUBLIC_ONE_ASYNCPG
    values = {"listing_id": listing.id, "today": listings_service.catalog_service.china_today()}
    assert list(parameters) == [values[p] for p in listings_service.PUBLIC_ONE_PARAMS]

    # the same connection, inside the test's transaction, used as asyncpg itself
    raw = (await connection.get_raw_connection()).driver_connection
    assert await listings_service.public_listing(raw, listing.id) == through_sqlalchemy
    with pytest.raises(listings_service.NotFound):
        await listings_service.public_listing(raw, uuid.uuid4())

    app = build_app(settings, _rolled_back_maker(connection), engine)
    app.state.read_pool = raw  # what the lifespan's asyncpg pool does, on this connection
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as pooled:
        for path in (f"/listings/{listing.id}", f"/listings/{uuid.uuid4()}", "/listings/x"):
            on_asyncpg, fallback = await pooled.get(path), await client.get(path)
            assert _without_request_id(on_asyncpg) == _without_request_id(fallback), path
        on_asyncpg = await pooled.get(f"/listings/{listing.id}")
    assert on_asyncpg.content == (await client.get(f"/listings/{listing.id}")).content
    assert on_asyncpg.json() == orjson.loads(
        orjson.dumps(through_sqlalchemy, option=orjson.OPT_UTC_Z)
    )
