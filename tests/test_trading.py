"""Bids, counter-offers and sealed-bid auctions through the API and the services."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from market.config import Settings
from market.db import create_sessionmaker
from market.orders import service as orders_service
from market.orders.models import Order
from market.trading import service as trading_service
from market.trading.models import AuctionClearing, Bid
from tests.factories import bearer
from tests.factories_listings import Supply, make_listing, make_supply
from tests.test_listings import key, problem
from tests.test_orders import ADDRESS, buyer, listing_state

TERMS = orders_service.Terms(fee_bps=300, payment_minutes=30, freshness_margin_days=2)


def soon(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


async def bid(
    client: httpx.AsyncClient, organisation: Any, token: str, listing_id: object, **terms: Any
) -> httpx.Response:
    body = {
        "listing_id": str(listing_id),
        "unit_price_fen": 6000,
        "quantity": 10,
        "partial_ok": False,
        "expires_at": soon(days=2),
        **ADDRESS,
        **terms,
    }
    return await client.post(
        f"/organisations/{organisation.id}/bids", headers=bearer(token) | key(), json=body
    )


def incoming(supply: Supply, *rest: object) -> str:
    return "/".join([f"/organisations/{supply.cooperative.id}/incoming-bids", *map(str, rest)])


async def negotiable(session: AsyncSession) -> tuple[Supply, Any]:
    supply = await make_supply(session)
    listing = await make_listing(session, supply, sale_mode="negotiable", price_tiers=[])
    return supply, listing


# ---------------------------------------------------------------- negotiation


async def test_bid_counter_and_accept_the_counter(client, session):
    supply, listing = await negotiable(session)
    organisation, token = await buyer(session)
    placed = await bid(client, organisation, token, listing.id, unit_price_fen=6000, quantity=20)
    assert placed.status_code == 201, placed.text
    bid_id = placed.json()["id"]
    coop = bearer(supply.token)
    [seen] = (await client.get(incoming(supply), headers=coop)).json()["items"]
    assert (seen["id"], seen["status"], seen["unit_price_fen"]) == (bid_id, "open", 6000)

    countered = await client.post(
        incoming(supply, bid_id, "counter"),
        headers=coop,
        json={
            "unit_price_fen": 6400,
            "quantity": 15,
            "expires_at": soon(days=1),
            "message": "可以少量",
        },
    )
    assert countered.status_code == 201, countered.text
    assert countered.json()["status"] == "countered"
    counter_id = countered.json()["counters"][0]["id"]
    assert await listing_state(session, listing.id) == (50, 0, 0)  # nothing reserved yet

    accepted = await client.post(
        f"/organisations/{organisation.id}/bids/{bid_id}/counters/{counter_id}/accept",
        headers=bearer(token) | key(),
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert (body["status"], body["filled_quantity"]) == ("accepted", 15)
    assert body["counters"][0]["status"] == "accepted"
    order = await orders_service.get_order(session, order_id=uuid.UUID(body["order_id"]))
    assert (order.source, order.goods_fen, order.status) == ("bid", 15 * 6400, "pending_payment")
    assert await listing_state(session, listing.id) == (35, 15, 0)
    # the cooperative cannot accept it again
    again = await client.post(incoming(supply, bid_id, "accept"), headers=coop | key(), json={})
    assert problem(again, 409, "invalid_transition")["current_status"] == "accepted"
    kinds = [
        n["kind"]
        for n in (
            await client.get(
                f"/organisations/{organisation.id}/notifications", headers=bearer(token)
            )
        ).json()["items"]
    ]
    assert kinds == ["bid_accepted", "bid_countered"]


async def test_a_counter_offer_stays_within_the_bid(client, session):
    """At most the bid's quantity, no later than its expiry; refused with the field named and
    nothing written. Past the bid's own expiry its counter cannot be taken, even before the
    sweep has marked the bid expired."""
    supply, listing = await negotiable(session)
    organisation, token = await buyer(session)
    placed = await bid(
        client, organisation, token, listing.id, quantity=10, expires_at=soon(days=1)
    )
    bid_id = placed.json()["id"]
    coop = bearer(supply.token)
    terms = {"unit_price_fen": 6400, "quantity": 10, "expires_at": soon(hours=12)}
    for field, change in [
        ("quantity", {"quantity": 11}),
        ("expires_at", {"expires_at": soon(days=2)}),
    ]:
        refused = await client.post(
            incoming(supply, bid_id, "counter"), headers=coop, json=terms | change
        )
        assert problem(refused, 422, "invalid")["errors"][0]["field"] == field
    stored = await session.get(Bid, uuid.UUID(bid_id))
    assert stored is not None
    await session.refresh(stored)
    assert stored.status == "open"
    assert await trading_service.counters_of(session, [stored.id]) == []

    countered = await client.post(incoming(supply, bid_id, "counter"), headers=coop, json=terms)
    assert countered.status_code == 201, countered.text
    counter_id = countered.json()["counters"][0]["id"]
    await session.execute(
        text("UPDATE bid SET expires_at = now() - interval '1 minute' WHERE id = :id"),
        {"id": bid_id},
    )
    late = await client.post(
        f"/organisations/{organisation.id}/bids/{bid_id}/counters/{counter_id}/accept",
        headers=bearer(token) | key(),
    )
    assert problem(late, 409, "invalid_transition")["current_status"] == "expired"
    assert await listing_state(session, listing.id) == (50, 0, 0)


async def test_taking_the_buyers_terms_after_countering_withdraws_the_counter(client, session):
    supply, listing = await negotiable(session)
    organisation, token = await buyer(session)
    bid_id = (await bid(client, organisation, token, listing.id, quantity=10)).json()["id"]
    coop = bearer(supply.token)
    countered = await client.post(
        incoming(supply, bid_id, "counter"),
        headers=coop,
        json={"unit_price_fen": 6400, "quantity": 8, "expires_at": soon(hours=12)},
    )
    counter_id = countered.json()["counters"][0]["id"]
    accepted = await client.post(incoming(supply, bid_id, "accept"), headers=coop | key(), json={})
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["filled_quantity"]) == ("accepted", 10)
    assert [c["status"] for c in accepted.json()["counters"]] == ["declined"]
    taken = await client.post(
        f"/organisations/{organisation.id}/bids/{bid_id}/counters/{counter_id}/accept",
        headers=bearer(token) | key(),
    )
    assert problem(taken, 409, "invalid_transition")
    assert await listing_state(session, listing.id) == (40, 10, 0)


async def test_partial_acceptance_only_when_the_buyer_allows_it(client, session):
    supply, listing = await negotiable(session)
    organisation, token = await buyer(session)
    whole = (
        await bid(client, organisation, token, listing.id, quantity=20, partial_ok=False)
    ).json()["id"]
    part = (
        await bid(client, organisation, token, listing.id, quantity=20, partial_ok=True)
    ).json()["id"]
    coop = bearer(supply.token) | key()
    refused = await client.post(
        incoming(supply, whole, "accept"), headers=coop, json={"quantity": 12}
    )
    assert problem(refused, 422, "partial_not_accepted")["errors"][0]["field"] == "quantity"
    taken = await client.post(
        incoming(supply, part, "accept"),
        headers=bearer(supply.token) | key(),
        json={"quantity": 12},
    )
    assert taken.status_code == 200, taken.text
    assert taken.json()["filled_quantity"] == 12
    assert await listing_state(session, listing.id) == (38, 12, 0)


async def test_reject_withdraw_and_expire(client, session):
    supply, listing = await negotiable(session)
    organisation, token = await buyer(session)
    first = (await bid(client, organisation, token, listing.id)).json()["id"]
    rejected = await client.post(
        incoming(supply, first, "reject"),
        headers=bearer(supply.token),
        json={"reason": "价格低于成本"},
    )
    assert (
        rejected.json()["status"] == "rejected"
        and rejected.json()["outcome_reason"] == "价格低于成本"
    )

    second = (await bid(client, organisation, token, listing.id)).json()["id"]
    withdrawn = await client.post(
        f"/organisations/{organisation.id}/bids/{second}/withdraw", headers=bearer(token)
    )
    assert withdrawn.json()["status"] == "withdrawn"
    late = await client.post(
        incoming(supply, second, "accept"), headers=bearer(supply.token) | key(), json={}
    )
    assert problem(late, 409, "invalid_transition")["current_status"] == "withdrawn"

    third = (await bid(client, organisation, token, listing.id)).json()["id"]
    await session.execute(
        text("UPDATE bid SET expires_at = now() - interval '1 minute' WHERE id = :id"),
        {"id": third},
    )
    expired = await client.post(
        incoming(supply, third, "accept"), headers=bearer(supply.token) | key(), json={}
    )
    assert problem(expired, 409, "invalid_transition")["current_status"] == "expired"
    fourth = (await bid(client, organisation, token, listing.id)).json()["id"]
    await session.execute(
        text("UPDATE bid SET expires_at = now() - interval '1 minute' WHERE id = :id"),
        {"id": fourth},
    )
    assert await trading_service.expire_bids(session) == 2  # the third one too
    assert (await session.get(Bid, uuid.UUID(fourth))).status == "expired"  # type: ignore[union-attr]


async def test_bad_bids_name_the_field(client, session):
    supply, listing = await negotiable(session)
    fixed = await make_listing(session, supply)
    organisation, token = await buyer(session)
    for field, terms in [
        ("unit_price_fen", {"unit_price_fen": 0}),
        ("unit_price_fen", {"unit_price_fen": -100}),
        ("unit_price_fen", {"unit_price_fen": 12.5}),
        ("unit_price_fen", {"unit_price_fen": 10**15}),
        ("quantity", {"quantity": 0}),
        ("quantity", {"quantity": 51}),
        ("expires_at", {"expires_at": None}),
        ("expires_at", {"expires_at": soon(days=-1)}),
        ("expires_at", {"expires_at": "2026-12-01T10:00:00"}),  # no time zone
        ("listing_id", {"listing_id": str(fixed.id)}),
        ("destination_code", {"destination_code": "000000"}),
        ("currency", {"currency": "USD"}),
    ]:
        listing_id = terms.pop("listing_id", listing.id)
        response = await bid(client, organisation, token, listing_id, **terms)
        assert response.status_code == 422, (field, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], (field, response.json())
    assert await session.scalar(select(func.count()).select_from(Bid)) == 0


async def test_bids_are_scoped(client, session):
    _, listing = await negotiable(session)
    other_supply, _ = await negotiable(session)
    organisation, token = await buyer(session)
    other, other_token = await buyer(session)
    bid_id = (await bid(client, organisation, token, listing.id)).json()["id"]
    assert (
        await client.get(f"/organisations/{other.id}/bids/{bid_id}", headers=bearer(other_token))
    ).status_code == 404
    assert (
        await client.get(
            f"/organisations/{organisation.id}/bids/{bid_id}", headers=bearer(other_token)
        )
    ).status_code == 404
    # another cooperative cannot answer it; a buyer cannot act as a cooperative
    foreign = await client.post(
        incoming(other_supply, bid_id, "accept"),
        headers=bearer(other_supply.token) | key(),
        json={},
    )
    assert foreign.status_code == 404
    problem(
        await client.post(
            f"/organisations/{organisation.id}/incoming-bids/{bid_id}/accept",
            headers=bearer(token) | key(),
            json={},
        ),
        403,
        "not_a_cooperative",
    )


# ---------------------------------------------------------------- auctions


async def auction(
    session: AsyncSession,
    *,
    quantity: int = 30,
    reserve: int | None = 5000,
    closes_in: dt.timedelta = dt.timedelta(hours=2),
) -> tuple[Supply, Any]:
    supply = await make_supply(session)
    listing = await make_listing(
        session,
        supply,
        sale_mode="auction",
        price_tiers=[],
        quantity=quantity,
        min_order_quantity=1,
        auction_closes_at=(dt.datetime.now(dt.UTC) + closes_in).isoformat(),
        reserve_price_fen=reserve,
    )
    return supply, listing


async def close_now(session: AsyncSession, listing_id: object) -> None:
    await session.execute(
        text("UPDATE listing SET auction_closes_at = now() - interval '1 second' WHERE id = :id"),
        {"id": listing_id},
    )


async def test_a_sealed_auction_clears_once_pay_as_bid(client, session):
    supply, listing = await auction(session, quantity=30, reserve=5000)
    bidders = [await buyer(session) for _ in range(4)]
    placed = []
    for (organisation, token), (price, quantity, partial) in zip(
        bidders,
        [(7000, 20, False), (6500, 20, True), (6500, 5, False), (4000, 10, True)],
        strict=True,
    ):
        response = await bid(
            client,
            organisation,
            token,
            listing.id,
            unit_price_fen=price,
            quantity=quantity,
            partial_ok=partial,
            expires_at=None,
        )
        assert response.status_code == 201, response.text
        placed.append(response.json()["id"])
    # sealed: the cooperative does not see auction bids before the clearing
    assert (await client.get(incoming(supply), headers=bearer(supply.token))).json()["items"] == []
    assert await trading_service.clear_auction(session, listing_id=listing.id, terms=TERMS) is None

    await close_now(session, listing.id)
    late = await bid(
        client, *bidders[3], listing.id, unit_price_fen=9000, quantity=1, expires_at=None
    )
    problem(late, 409, "auction_closed")
    result = await trading_service.clear_auction(session, listing_id=listing.id, terms=TERMS)
    assert result is not None
    # 20 at 7000 (whole), then 6500 × 20 partial-ok gets the remaining 10, 6500 × 5 finds
    # nothing left, 4000 is below the reserve
    assert (result.quantity_offered, result.quantity_allocated, result.winners) == (30, 30, 2)
    assert result.revenue_fen == 20 * 7000 + 10 * 6500
    again = await trading_service.clear_auction(session, listing_id=listing.id, terms=TERMS)
    assert again is result

    outcome = {
        b.id: (b.status, b.filled_quantity)
        for b in (
            await session.scalars(
                select(Bid)
                .where(Bid.listing_id == listing.id)
                .execution_options(populate_existing=True)
            )
        )
    }
    assert [outcome[uuid.UUID(i)] for i in placed] == [
        ("won", 20),
        ("partially_won", 10),
        ("lost", 0),
        ("lost", 0),
    ]
    orders = list(await session.scalars(select(Order).where(Order.source == "auction")))
    assert sorted(o.goods_fen for o in orders) == [10 * 6500, 20 * 7000]
    assert await listing_state(session, listing.id) == (0, 30, 0)

    shown = await client.get(
        f"/organisations/{supply.cooperative.id}/listings/{listing.id}/auction-result",
        headers=bearer(supply.token),
    )
    assert shown.status_code == 200, shown.text
    assert [(b["unit_price_fen"], b["status"]) for b in shown.json()["bids"]] == [
        (7000, "won"),
        (6500, "partially_won"),
        (6500, "lost"),
        (4000, "lost"),
    ]
    reasons = [b["outcome_reason"] for b in shown.json()["bids"]]
    assert "reserve" in reasons[3] and reasons[2]
    # each bidder sees its own outcome
    mine = await client.get(
        f"/organisations/{bidders[3][0].id}/bids/{placed[3]}", headers=bearer(bidders[3][1])
    )
    assert mine.json()["status"] == "lost"


async def test_a_late_bid_extends_the_close_a_limited_number_of_times(client, session):
    _, listing = await auction(session, closes_in=dt.timedelta(minutes=2))
    organisation, token = await buyer(session)
    before = listing.auction_closes_at
    for n in range(5):
        await session.execute(
            text(
                "UPDATE listing SET auction_closes_at = now() + interval '2 minutes' WHERE id = :id"
            ),
            {"id": listing.id},
        )
        response = await bid(
            client,
            organisation,
            token,
            listing.id,
            quantity=1,
            unit_price_fen=6000 + n,
            expires_at=None,
        )
        assert response.status_code == 201, response.text
    extensions = await session.scalar(
        text("SELECT auction_extensions FROM listing WHERE id = :id"), {"id": listing.id}
    )
    assert extensions == Settings.model_fields["auction_max_extensions"].default == 3
    assert before is not None


async def test_two_workers_racing_to_clear_give_one_result(
    engine: AsyncEngine, clean_db, committing_client
):
    maker = create_sessionmaker(engine)
    async with maker() as session, session.begin():
        _, listing = await auction(session, quantity=10, reserve=None)
        bidders = [await buyer(session) for _ in range(6)]
    for n, (organisation, token) in enumerate(bidders):
        response = await bid(
            committing_client,
            organisation,
            token,
            listing.id,
            unit_price_fen=5000 + 100 * n,
            quantity=3,
            partial_ok=True,
            expires_at=None,
        )
        assert response.status_code == 201, response.text
    async with maker() as session, session.begin():
        await close_now(session, listing.id)

    async def clear() -> Any:
        async with maker() as session, session.begin():
            return await trading_service.clear_auction(session, listing_id=listing.id, terms=TERMS)

    first, second = await asyncio.gather(clear(), clear())
    assert first is not None and second is not None
    async with maker() as session:
        assert await session.scalar(select(func.count()).select_from(AuctionClearing)) == 1
        orders = list(await session.scalars(select(Order)))
        assert sorted(o.goods_fen for o in orders) == sorted(
            [3 * 5500, 3 * 5400, 3 * 5300, 1 * 5200]
        )
        assert await listing_state(session, listing.id) == (0, 10, 0)


async def test_a_bid_waiting_on_a_clearing_is_refused_not_left_open(
    engine: AsyncEngine, clean_db, committing_client
):
    """A last-second bid that waits for the listing while a worker clears the auction gets 409
    `auction_closed` once the clearing commits: it is neither left open on a cleared auction
    nor allowed to move a closed auction's close."""
    maker = create_sessionmaker(engine)
    async with maker() as session, session.begin():
        _, listing = await auction(
            session, quantity=10, reserve=None, closes_in=dt.timedelta(seconds=2)
        )
        organisation, token = await buyer(session)
        closes_at = listing.auction_closes_at
    async with maker() as worker, worker.begin():
        # the worker holds the listing; the bid arrives in the last second and waits for it
        held = await worker.execute(
            text("SELECT id FROM listing WHERE id = :id FOR UPDATE"), {"id": listing.id}
        )
        assert held.scalar() == listing.id
        late = asyncio.create_task(
            bid(committing_client, organisation, token, listing.id, quantity=2, expires_at=None)
        )
        await asyncio.sleep(2.5)  # the bidding closes meanwhile
        assert not late.done()
        result = await trading_service.clear_auction(worker, listing_id=listing.id, terms=TERMS)
        assert result is not None and result.bids == 0
    problem(await late, 409, "auction_closed")
    async with maker() as session:
        assert await session.scalar(select(func.count()).select_from(Bid)) == 0
        stored = await session.scalar(
            text("SELECT auction_closes_at FROM listing WHERE id = :id"), {"id": listing.id}
        )
        assert stored == closes_at


async def test_a_running_auctions_quantity_can_grow_but_not_shrink(client, session):
    """Reducing it would make every sealed bid lose to a `sold_out` that is not true."""
    supply, listing = await auction(session, quantity=10, reserve=None)
    url = f"/organisations/{supply.cooperative.id}/listings/{listing.id}/stock-adjustments"
    coop = bearer(supply.token)
    cut = await client.post(url, headers=coop | key(), json={"quantity": -10, "reason": "损耗"})
    assert "reduced" in problem(cut, 409, "auction_running")["detail"]
    grown = await client.post(url, headers=coop | key(), json={"quantity": 5, "reason": "补货"})
    assert grown.status_code == 201, grown.text
    assert await listing_state(session, listing.id) == (15, 0, 0)


async def test_winners_get_their_orders_when_the_window_closes_with_the_bidding(client, session):
    """A listing whose validity ends when its bidding does is still sold to its winners."""
    _, listing = await auction(session, quantity=10, reserve=None)
    organisation, token = await buyer(session)
    placed = await bid(client, organisation, token, listing.id, quantity=4, expires_at=None)
    assert placed.status_code == 201, placed.text
    await session.execute(
        text(
            "UPDATE listing SET valid_from = now() - interval '1 hour', "
            "auction_closes_at = now() - interval '1 second', "
            "valid_until = now() - interval '1 second' WHERE id = :id"
        ),
        {"id": listing.id},
    )
    result = await trading_service.clear_auction(session, listing_id=listing.id, terms=TERMS)
    assert result is not None and (result.winners, result.quantity_allocated) == (1, 4)
    won = await session.get(Bid, uuid.UUID(placed.json()["id"]), populate_existing=True)
    assert won is not None and won.status == "won" and won.order_id is not None


async def test_a_published_auction_runs_until_its_clearing_closes_it(client, session):
    """The cooperative can neither pause nor close it, before or after the bidding's close
    (its sealed bids would stay open for good); the clearing closes it, and its winners get
    their orders."""
    supply, listing = await auction(session, quantity=10, reserve=None)
    organisation, token = await buyer(session)
    placed = await bid(client, organisation, token, listing.id, quantity=4, expires_at=None)
    assert placed.status_code == 201, placed.text
    path = f"/organisations/{supply.cooperative.id}/listings/{listing.id}"
    coop = bearer(supply.token) | key()
    for moment in ("bidding", "closed, not cleared yet"):
        for action in ("pause", "close"):
            refused = await client.post(f"{path}/{action}", headers=coop)
            assert "China time" in problem(refused, 409, "auction_running")["detail"], moment
        await close_now(session, listing.id)
    result = await trading_service.clear_auction(session, listing_id=listing.id, terms=TERMS)
    assert result is not None and (result.winners, result.quantity_allocated) == (1, 4)
    shown = await client.get(path, headers=bearer(supply.token))
    assert shown.json()["status"] == "closed"
    # closed now: a listing's own refusal, not the auction's
    again = await client.post(f"{path}/close", headers=coop)
    assert "closed" in problem(again, 409, "invalid_transition")["detail"]
