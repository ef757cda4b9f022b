"""The set-based auction clearing: clear()'s fast paths against the rules, and the bulk
writing of the winners' orders against `orders_service.place_order`, field by field."""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from market.calendar import china_today
from market.db import new_id, new_ids, short_ref
from market.errors import MarketError
from market.logistics import service as logistics_service
from market.notifications import service as notifications_service
from market.notifications.models import EmailOutbox, Notification
from market.orders import service as orders_service
from market.orders.models import Fulfilment, Order, OrderLine
from market.organisations import service as organisations_service
from market.regions import service as regions_service
from market.trading import clearing
from market.trading import service as trading_service
from market.trading.clearing import BidOutcome, SealedBid, clear, ranking_key
from market.trading.models import Bid
from tests.factories_listings import make_listing, make_supply
from tests.test_auction_clearing import PROPERTY, auctions, reference_clear
from tests.test_orders import buyer
from tests.test_trading import TERMS, auction, bid, close_now, negotiable

# ---------------------------------------------------------------- clear(): the fast paths


@PROPERTY
@given(auctions())
def test_the_estimated_band_clears_as_the_reference(
    auction: tuple[list[SealedBid], int, int | None],
) -> None:
    """With a sample of every bid, small auctions go through the band estimate and the
    all-win block too (normally only auctions of 65,536 bids or more do)."""
    bids, quantity, reserve = auction
    expected = reference_clear(bids, quantity, reserve)
    in_seq_order = sorted(bids, key=lambda b: b.placed_seq)
    with mock.patch.object(clearing, "_SAMPLE", 4), mock.patch.object(clearing, "_MIN_STEP", 1):
        assert clear(bids, quantity=quantity, reserve_price_fen=reserve) == expected
        by_seq = clear(in_seq_order, quantity=quantity, reserve_price_fen=reserve)
    assert {o.bid_id: o for o in by_seq} == {o.bid_id: o for o in expected}


def sorted_walk(
    bids: list[SealedBid], quantity: int, reserve: int | None
) -> dict[str, tuple[int, str | None]]:
    """The rules as one walk of the sorted bids (fast enough for large auctions)."""
    got: dict[str, tuple[int, str | None]] = {}
    left = quantity
    for b in sorted(bids, key=ranking_key):
        if reserve is not None and b.unit_price_fen < reserve:
            got[b.id] = (0, "below_reserve")
        elif left == 0:
            got[b.id] = (0, "sold_out")
        elif b.quantity <= left or b.partial_ok:
            got[b.id] = (min(b.quantity, left), None)
            left -= got[b.id][0]
        else:
            got[b.id] = (0, "needs_full_quantity")
    return got


def large_auction(
    n: int, *, seed: int, partial_share: float, offered: float, in_order: bool = True
) -> tuple[list[SealedBid], int, int]:
    rng = random.Random(seed)
    prices = [rng.randrange(3800, 5201, 10) for _ in range(n)]
    wants = [rng.choice((5, 10, 20, 50, 100, 500)) for _ in range(n)]
    bids = [
        SealedBid(f"b{k}", prices[k], wants[k], rng.random() < partial_share, 10 * k)
        for k in range(n)
    ]
    if not in_order:
        rng.shuffle(bids)
    return bids, int(sum(wants) * offered), sorted(prices)[n // 10]


def test_large_auctions_clear_as_a_sorted_walk() -> None:
    n = 70_000  # above the size at which the band is estimated
    for seed, partial_share, offered, in_order in [
        (1, 0.6, 1 / 3, True),  # the benchmark's shape
        (2, 0.0, 1 / 3, True),  # no partial fills: the walk skips bids after the band
        (3, 0.6, 0.95, True),  # nearly all the demand
        (4, 0.3, 1.5, True),  # more than the demand: everything eligible wins
        (5, 0.6, 1 / 3, False),  # not in placing order: the general ranking key
        (6, 0.6, 0.0, True),  # nothing on offer
    ]:
        bids, quantity, reserve = large_auction(
            n, seed=seed, partial_share=partial_share, offered=offered, in_order=in_order
        )
        outcomes = clear(bids, quantity=quantity, reserve_price_fen=reserve)
        got = {o.bid_id: (o.quantity, o.reason_code) for o in outcomes}
        assert got == sorted_walk(bids, quantity, reserve), (seed, partial_share, offered)
        assert [outcomes.allocated(k) for k in range(0, n, 997)] == [
            outcomes[k].quantity for k in range(0, n, 997)
        ]
        assert outcomes.winners() == [k for k, o in enumerate(outcomes) if o.quantity]


def test_a_wrong_estimate_only_costs_time() -> None:
    """A huge bid at the top that the sample misses: the demand counted at the estimated
    price exceeds the quantity, and the clearing ranks everything instead."""
    bids, quantity, reserve = large_auction(70_000, seed=7, partial_share=0.0, offered=1 / 3)
    bids[1] = SealedBid("whale", 5300, quantity - 3, False, bids[1].placed_seq)
    outcomes = clear(bids, quantity=quantity, reserve_price_fen=reserve)
    assert outcomes[1] == BidOutcome("whale", "won", quantity - 3, 5300)
    assert {o.bid_id: (o.quantity, o.reason_code) for o in outcomes} == sorted_walk(
        bids, quantity, reserve
    )


def test_outcomes_behave_as_a_list() -> None:
    bids = [
        SealedBid("b1", 900, 5, False, 1),
        SealedBid("b2", 800, 9, False, 2),
        SealedBid("b3", 700, 3, True, 3),
    ]
    outcomes = clear(bids, quantity=6, reserve_price_fen=None)
    as_list = list(outcomes)
    assert outcomes == as_list and as_list == outcomes and len(outcomes) == 3
    assert outcomes[-1] == as_list[2] == BidOutcome("b3", "partially_won", 1, 700)
    assert outcomes[1:] == as_list[1:]
    assert outcomes != as_list[:2] and outcomes != "abc"
    assert [outcomes.allocated(k) for k in range(3)] == [5, 0, 1]
    assert outcomes.winners() == [0, 2]


# ---------------------------------------------------------------- the bulk orders


async def far_county(session: AsyncSession) -> str:
    """A county far from Gansu (Hainan), from the gazetteer."""
    code = await session.scalar(
        text("SELECT code FROM region WHERE level = 'county' AND code LIKE '46%' ORDER BY code")
    )
    assert code is not None
    return str(code)


async def transit(
    session: AsyncSession, origin: str, destination: str, grams: int, storage: str
) -> int:
    _, _, straight = await regions_service.distance(session, origin, destination)
    rate = logistics_service.rate_for(storage, grams)
    return logistics_service.transit_days(rate, logistics_service.road_km(straight))


def normal(value: Any, ids: dict[str, str]) -> Any:
    """A value with the ids of one run replaced by names that both runs share."""
    if isinstance(value, uuid.UUID):
        value = str(value)
    if isinstance(value, str):
        for found, name in ids.items():
            value = value.replace(found, name).replace(short_ref(uuid.UUID(found)), name)
        return re.sub(r"\d{2}-\d{2} \d{2}:\d{2}", "<due>", value)  # the deadline's minute
    return value


async def written(session: AsyncSession, orders: dict[uuid.UUID, uuid.UUID]) -> dict[str, Any]:
    """Everything the orders (by bid) got in the database, ids replaced by the bid's."""
    ids: dict[str, str] = {str(order_id): f"<order of {b}>" for b, order_id in orders.items()}
    fulfilments = list(
        await session.scalars(select(Fulfilment).where(Fulfilment.order_id.in_(orders.values())))
    )
    for f in fulfilments:
        ids[str(f.id)] = f"<fulfilment of {ids[str(f.order_id)]}>"
    skip = {
        "id", "created_at", "updated_at", "order_id", "fulfilment_id", "payment_due_at",
        "emailed_at",
    }  # fmt: skip

    def fields(row: Any) -> dict[str, Any]:
        return {
            c.key: normal(getattr(row, c.key), ids)
            for c in row.__table__.columns
            if c.key not in skip
        }

    result: dict[str, Any] = {"orders": {}, "movements": [], "notifications": []}
    for bid_id, order_id in orders.items():
        order = await session.get(Order, order_id, populate_existing=True)
        assert order is not None
        due = order.payment_due_at - order.created_at
        assert abs(due - dt.timedelta(minutes=TERMS.payment_minutes)) < dt.timedelta(minutes=1)
        lines = await session.scalars(select(OrderLine).where(OrderLine.order_id == order_id))
        result["orders"][bid_id] = {
            "order": fields(order),
            "fulfilments": [fields(f) for f in fulfilments if f.order_id == order_id],
            "lines": [fields(line) for line in lines],
        }
    movements = await session.execute(
        text(
            "SELECT kind, quantity, available_after, reason, reference, created_by_id "
            "FROM stock_movement WHERE reference = ANY(:refs) ORDER BY id"
        ),
        {"refs": list(ids)},
    )
    result["movements"] = [tuple(normal(v, ids) for v in m) for m in movements]
    await notifications_service.write_emails(session)  # what the worker does next
    notifications = await session.scalars(
        select(Notification)
        .where(Notification.subject_id.in_([f.id for f in fulfilments]))
        .order_by(Notification.created_at)
    )
    for n in notifications:
        emails = await session.scalars(
            select(EmailOutbox)
            .where(EmailOutbox.notification_id == n.id)
            .order_by(EmailOutbox.to_address)
        )
        ids[str(n.id)] = "<notification>"
        result["notifications"].append(
            (
                fields(n),
                [(e.to_address, normal(e.subject, ids), normal(e.body_text, ids)) for e in emails],
            )
        )
    return result


async def test_bulk_orders_are_what_place_order_makes(client, session):
    """One auction cleared set-based, then (rolled back) its winners placed one by one through
    place_order, as the clearing did before: the same orders, fulfilments, lines and stock
    movements, and the same winners refused for the same reason; the cooperative gets one
    notification about the clearing instead of one per order."""
    far = await far_county(session)
    supply = await make_supply(session, product={"shelf_life_days": 540})
    # shelf life: enough for Beijing, not for the far county (goods must arrive fresh)
    origin, storage = supply.cooperative.region_code, supply.product.storage_class
    near_days = max(
        [await transit(session, origin, "110105", 500 * q, storage) for q in (5, 6, 20)]
    )
    far_days = await transit(session, origin, far, 500 * 6, storage)
    assert far_days > near_days
    made_on = supply.lot.production_date or supply.lot.harvest_date
    assert made_on is not None
    elapsed = (china_today() - made_on).days
    supply.product.shelf_life_days = elapsed + near_days + TERMS.freshness_margin_days
    await session.flush()
    listing = await make_listing(
        session,
        supply,
        sale_mode="auction",
        price_tiers=[],
        quantity=40,
        min_order_quantity=1,
        auction_closes_at=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat(),
        reserve_price_fen=5000,
    )
    terms = [  # price, quantity, partial, destination
        (7000, 6, False, "110105"),
        (6900, 6, False, far),  # wins, but would spoil on the way
        (6800, 6, False, "110105"),  # wins, but its buyer is no longer verified
        (6800, 5, False, "110105"),
        (6600, 6, True, "110105"),
        (6500, 6, False, "110105"),
        (6400, 20, True, "110105"),  # the rest, in part
        (6300, 3, False, "110105"),  # sold out
        (4000, 3, False, "110105"),  # below the reserve
    ]
    bidders = [await buyer(session) for _ in terms]
    placed: list[uuid.UUID] = []
    for (organisation, token), (price, quantity, partial, destination) in zip(
        bidders, terms, strict=True
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
            destination_code=destination,
            note=f"bid at {price}",
        )
        assert response.status_code == 201, response.text
        placed.append(uuid.UUID(response.json()["id"]))
    listing_id = listing.id
    await close_now(session, listing_id)
    await session.execute(
        text("UPDATE organisation SET verification_status = 'pending' WHERE id = :id"),
        {"id": bidders[2][0].id},
    )
    session.expire_all()

    # set-based, rolled back afterwards
    savepoint = await session.begin_nested()
    loaded = {b.id: b for b in await session.scalars(select(Bid).where(Bid.id.in_(placed)))}
    result = await trading_service.clear_auction(session, listing_id=listing_id, terms=TERMS)
    assert result is not None
    # bids the session held before are not left stale (nor dirty)
    assert [loaded[i].status for i in placed][:3] == ["won", "lost", "lost"]
    assert loaded[placed[0]].order_id is not None and not session.dirty
    bids = {
        b.id: b
        for b in await session.scalars(
            select(Bid).where(Bid.id.in_(placed)).execution_options(populate_existing=True)
        )
    }
    bulk_orders = {placed.index(b.id): b.order_id for b in bids.values() if b.order_id}
    bulk = await written(session, bulk_orders)  # type: ignore[arg-type]
    bulk_refused = {
        placed.index(b.id): b.outcome_reason
        for b in bids.values()
        if b.status == "lost" and (b.outcome_reason or "").startswith("Won, but")
    }
    statuses = [(bids[i].status, bids[i].filled_quantity) for i in placed]
    assert (result.winners, result.quantity_allocated) == (5, 6 + 5 + 6 + 6 + 5)
    # a winner who could not buy is told why, like every loser, and its bid is decided
    from market.notifications.models import Notification

    told = {
        n.subject_id: n.body
        for n in await session.scalars(
            select(Notification).where(Notification.kind == "auction_lost")
        )
    }
    for k in bulk_refused:
        assert "could not be placed" in told[placed[k]]
        assert bids[placed[k]].decided_at is not None
    # the cooperative hears once, about the whole clearing, not once per order
    [cleared] = await session.scalars(
        select(Notification).where(Notification.organisation_id == supply.cooperative.id)
    )
    assert (cleared.kind, cleared.subject_id) == ("auction_cleared", listing_id)
    assert "9 个出价，5 位买家中标，成交 28" in cleared.body
    assert "未成交的 12 不再出售" in cleared.body
    await savepoint.rollback()

    # one by one through place_order, each in a savepoint, as the clearing did before
    session.expire_all()
    outcomes = clear(
        [
            SealedBid(str(i), p, q, part, k)
            for k, (i, (p, q, part, _)) in enumerate(zip(placed, terms, strict=True))
        ],
        quantity=40,
        reserve_price_fen=5000,
    )
    one_by_one: dict[int, uuid.UUID] = {}
    refused: dict[int, str] = {}
    for k, outcome in sorted(enumerate(outcomes), key=lambda x: (-x[1].unit_price_fen, x[0])):
        if not outcome.quantity:
            continue
        b = await trading_service.get_bid(session, bid_id=placed[k])
        organisation = await organisations_service.get_organisation(
            session, organisation_id=b.buyer_id
        )
        try:
            async with session.begin_nested():
                order = await orders_service.place_order(
                    session,
                    buyer=organisation,
                    user_id=b.placed_by_id,
                    data=trading_service._order_data(b, outcome.quantity),
                    terms=TERMS,
                    source="auction",
                    prices={b.listing_id: b.unit_price_fen},
                )
        except MarketError as exc:
            refused[k] = f"Won, but the order could not be placed: {exc}"
            continue
        one_by_one[k] = order.id
    assert refused == bulk_refused and set(refused) == {1, 2}
    assert "Not suitable for this destination" in refused[1]
    assert "not verified" in refused[2]
    # the same rows, but for place_order's per-order notification to the cooperative
    by_one = await written(session, one_by_one)
    told_cooperative = by_one.pop("notifications")
    assert [n["kind"] for n, _ in told_cooperative] == ["order_placed"] * 5
    assert bulk.pop("notifications") == []
    assert by_one == bulk
    assert statuses == [
        ("won", 6),
        ("lost", 0),
        ("lost", 0),
        ("won", 5),
        ("won", 6),
        ("won", 6),
        ("partially_won", 5),
        ("lost", 0),
        ("lost", 0),
    ]


def test_new_ids_are_distinct_time_ordered_uuids() -> None:
    """The ids a clearing gives its orders (and every row its model's id): version 7, the RFC
    4122 variant, all distinct, each larger than every one made before it in the process,
    whether made in one batch, one by one, across the counter's 30-bit boundaries or when the
    counter runs out within a millisecond; carrying the millisecond of their making; usable
    wherever a `uuid.UUID` is (equal and hashed as the same id parsed from text); named to
    people by random digits (short_ref), not by the shared time."""
    import time

    from market import db

    before = time.time_ns() // 1_000_000
    ids = new_ids(4096) + [new_id() for _ in range(50)] + new_ids(3)
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7} and {i.variant for i in ids} == {uuid.RFC_4122}
    assert [i.bytes for i in ids] == sorted(i.bytes for i in ids)
    made = int.from_bytes(ids[0].bytes[:6])
    assert before <= made <= time.time_ns() // 1_000_000
    assert all(isinstance(i, uuid.UUID) for i in ids)
    parsed = uuid.UUID(str(ids[0]))
    assert parsed == ids[0] and hash(parsed) == hash(ids[0]) and {parsed: 1}[ids[0]] == 1
    assert new_ids(0) == []
    assert len({short_ref(i) for i in ids[:4096]}) > 4000  # 32 random bits each
    # a counter 3 short of a 30-bit boundary, then one about to run out: still increasing
    ms, _ = db._last_v7
    db._last_v7 = (ms + 60_000, (5 << 30) - 3)
    across = new_ids(10)
    db._last_v7 = (db._last_v7[0], (1 << 42) - 5)
    out = new_ids(10)
    more = [ids[-1], *across, *out]
    assert [i.bytes for i in more] == sorted(i.bytes for i in more)
    assert len(set(more)) == len(more) and {i.version for i in more} == {7}


def test_the_collector_pause_resumes_after_the_last_user_even_on_errors() -> None:
    """A clearing pauses the cyclic garbage collector; nested or overlapping pauses resume it
    once, when the last ends (an error included), and leave it off if it was off."""
    import gc

    from market.db import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("a clearing failed")
        assert not gc.isenabled()  # the outer one still runs
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_key_checks_are_planned_for_the_tables_as_they_are(session):
    """PostgreSQL keeps a foreign-key check's plan per connection. One made while the orders
    table was small reads the whole table; kept for a clearing's thousands of rows, it would
    make the clearing quadratic in its winners. The bulk writing has the checks planned
    afresh: the orders table is read whole a handful of times, not once per order."""
    organisation, _ = await buyer(session)
    supply = await make_supply(session)
    listing = await make_listing(
        session, supply, price_tiers=[], quantity=200, min_order_quantity=1
    )
    address = {
        "destination_code": "110105",
        "address": "北京市朝阳区新发地 B 区 12 号",
        "contact_name": "王建国",
        "contact_phone": "13800138000",
    }

    def sales(count: int) -> list[orders_service.AgreedSale]:
        return [
            orders_service.AgreedSale(organisation.id, None, 1, 6000, **address)
            for _ in range(count)
        ]

    async def whole_reads() -> int:
        return int(
            await session.scalar(
                text(
                    "SELECT sum(seq_scan) FROM pg_stat_xact_user_tables "
                    "WHERE relname IN ('order', 'fulfilment')"
                )
            )
            or 0
        )

    # the checks' plans made and kept as if the tables were small: by whole reads
    await session.execute(text("SET LOCAL enable_indexscan = off"))
    await session.execute(text("SET LOCAL enable_bitmapscan = off"))
    placed = await orders_service.place_agreed_orders(
        session, listing_id=listing.id, sales=sales(8), terms=TERMS
    )
    assert all(isinstance(p, orders_service.PlacedOrder) for p in placed)
    assert await whole_reads() >= 8  # the checks did read the tables whole
    await session.execute(text("SET LOCAL enable_indexscan = on"))
    await session.execute(text("SET LOCAL enable_bitmapscan = on"))

    before = await whole_reads()
    placed = await orders_service.place_agreed_orders(
        session, listing_id=listing.id, sales=sales(190), terms=TERMS
    )
    assert all(isinstance(p, orders_service.PlacedOrder) for p in placed)
    assert await whole_reads() - before < 20


# the columns a decision writes (the clearing's UPDATE, and every accept, reject, withdrawal
# and expiry of a negotiation bid)
DECIDED = {"status", "filled_quantity", "order_id", "outcome_reason", "decided_at", "updated_at"}


async def test_deciding_auction_bids_is_a_hot_update(client, session):
    """No index of `bid` holds (as a key, in an expression or in a predicate) a column that
    deciding a bid writes, so a clearing decides its bids in place, on their own pages and
    with no index entry (a HOT update): each of them, here."""
    indexed = set(
        await session.scalars(
            text(
                "SELECT DISTINCT a.attname FROM pg_depend d "
                "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
                "WHERE d.classid = 'pg_class'::regclass AND d.refobjid = 'bid'::regclass "
                "AND d.objid IN (SELECT indexrelid FROM pg_index "
                "                WHERE indrelid = 'bid'::regclass)"
            )
        )
    )
    assert {"listing_id", "seq", "open_until", "id"} <= indexed
    assert not indexed & DECIDED
    _, listing = await auction(session, quantity=12, reserve=5000)
    for price in (7000, 6500, 6000, 5500, 4000):
        organisation, token = await buyer(session)
        response = await bid(
            client, organisation, token, listing.id, unit_price_fen=price, quantity=4,
            expires_at=None,
        )  # fmt: skip
        assert response.status_code == 201, response.text
    await close_now(session, listing.id)
    updates = text(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'bid'"
    )
    before = (await session.execute(updates)).one()
    result = await trading_service.clear_auction(session, listing_id=listing.id, terms=TERMS)
    assert result is not None and result.winners == 3
    after = (await session.execute(updates)).one()
    assert (after[0] - before[0], after[1] - before[1]) == (5, 5)


async def test_the_expiry_sweep_reads_open_until(client, session):
    """`open_until` is a standing negotiation bid's expiry and NULL for any other bid, kept
    by PostgreSQL as the status moves: the sweep's index holds only the bids it may expire."""
    _, listing = await negotiable(session)
    organisation, token = await buyer(session)
    response = await bid(client, organisation, token, listing.id)
    assert response.status_code == 201, response.text
    standing = await session.get(Bid, uuid.UUID(response.json()["id"]))
    assert standing is not None and standing.open_until == standing.expires_at is not None
    await session.execute(
        text("UPDATE bid SET status = 'rejected' WHERE id = :id"), {"id": standing.id}
    )
    await session.refresh(standing)
    assert standing.open_until is None and standing.expires_at is not None
    _, sealed = await auction(session)
    response = await bid(client, organisation, token, sealed.id, expires_at=None)
    assert response.status_code == 201, response.text
    auction_bid = await session.get(Bid, uuid.UUID(response.json()["id"]))
    assert auction_bid is not None and auction_bid.open_until is None
