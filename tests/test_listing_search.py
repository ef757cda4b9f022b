"""Listing search through the API on the default PostgreSQL backend, and the outbox that keeps
the index in step with listings, their cooperatives, products and lots."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from market.db import create_sessionmaker
from market.listing_search import service as sync
from market.listings import service as listings_service
from market.organisations import service as organisations_service
from market.regions import service as regions_service
from search.base import Query
from search.postgres import PostgresSearch
from tests.conftest import _rolled_back_maker
from tests.factories import bearer
from tests.factories_listings import listing_body, make_listing, make_supply, purchase
from tests.test_listings import action, create, key, listings_url, problem


async def search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/search/listings", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(result: dict[str, Any]) -> list[str]:
    return [item["id"] for item in result["items"]]


async def outbox(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.execute(text("SELECT listing_id FROM search_outbox ORDER BY id"))
    return list(rows.scalars())


async def indexed_version(session: AsyncSession, listing_id: object) -> int | None:
    version = await session.scalar(
        text("SELECT version FROM search_listing WHERE id = :id"), {"id": str(listing_id)}
    )
    return None if version is None else int(version)


# ---------------------------------------------------------------- through the API


async def test_a_published_listing_is_found_at_once_with_what_buyers_need(client, session):
    supply = await make_supply(session)  # 60 % from a poor household
    listing_id = (await create(client, supply, title_zh="靖远枸杞 特级 500g 礼盒")).json()["id"]
    assert await search(client, q="枸杞") == {
        "items": [],
        "total": 0,
        "total_exact": True,
        "next_cursor": None,
        "facets": {},
    }
    assert (await action(client, supply, listing_id, "publish")).status_code == 200

    # indexed in the publishing transaction: nothing left for the worker
    assert await outbox(session) == []
    for q in ("枸杞", "gouqi", "gq", "wolfberry", "靖远", "白银 枸杞", "甘肃"):
        assert ids(await search(client, q=q)) == [listing_id], q
    found = await search(client, q="靖远枸杞", destination="110000")
    hit = found["items"][0]
    assert hit["title_zh"] == "靖远枸杞 特级 500g 礼盒"
    assert hit["highlight"] == "<em>靖远枸杞</em> 特级 500g 礼盒"
    assert hit["cooperative"] == {
        "id": str(supply.cooperative.id),
        "name_zh": supply.cooperative.name_zh,
    }
    assert hit["place"] == {
        "county_code": "620421",
        "county_name_zh": "靖远县",
        "city_name_zh": "白银市",
        "province_name_zh": "甘肃省",
        "is_poverty_county": False,
    }
    assert hit["unit_price_fen"] == 6800
    assert hit["quantity_available"] == 50
    assert hit["poor_share_bp"] == 6000
    assert hit["sale_mode"] == "fixed"
    assert 1000 < hit["distance_km"] < 1200  # Jingyuan to Beijing, straight line
    assert (
        await indexed_version(session, listing_id)
        == (await listings_service.get_listing(session, listing_id=uuid.UUID(listing_id))).version
    )


async def test_paused_closed_and_sold_out_listings_disappear(client, session):
    supply = await make_supply(session)
    listing_id = (await create(client, supply, quantity=10, min_order_quantity=1)).json()["id"]
    await action(client, supply, listing_id, "publish")
    assert ids(await search(client, q="枸杞")) == [listing_id]

    await action(client, supply, listing_id, "pause")
    assert ids(await search(client, q="枸杞")) == []
    await action(client, supply, listing_id, "resume")
    assert ids(await search(client, q="枸杞")) == [listing_id]

    url = listings_url(supply, listing_id, "stock-adjustments")
    headers = bearer(supply.token) | key()
    sold_out = await client.post(url, headers=headers, json={"quantity": -10, "reason": "盘点"})
    assert sold_out.json()["listing"]["status"] == "sold_out"
    assert ids(await search(client, q="枸杞")) == []
    back = await client.post(
        url, headers=bearer(supply.token) | key(), json={"quantity": 4, "reason": "补货"}
    )
    assert back.status_code == 201, back.text
    assert [i["quantity_available"] for i in (await search(client, q="枸杞"))["items"]] == [4]

    await action(client, supply, listing_id, "close")
    assert ids(await search(client, q="枸杞")) == []
    assert await indexed_version(session, listing_id) is None


async def test_every_change_raises_the_version(session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    before = listing.version
    await listings_service.adjust(
        session, listing=listing, quantity=-1, reason="盘点", user_id=supply.owner.id
    )
    await session.refresh(listing)
    assert listing.version == before + 1
    await session.execute(
        text("UPDATE listing SET title_zh = title_zh WHERE id = :id"), {"id": listing.id}
    )
    await session.refresh(listing)
    assert listing.version == before + 2


# ---------------------------------------------------------------- the outbox and the worker


async def test_changes_elsewhere_reach_the_index_through_the_outbox(connection, session, engine):
    """Changes made outside a request (services, jobs, other tables) wait in the outbox; the
    worker sends them: a renamed cooperative, a new sourcing record, a revoked verification."""
    backend = PostgresSearch(engine, connection=connection)
    maker = _rolled_back_maker(connection)
    supply = await make_supply(session)
    listing = await make_listing(session, supply, title_zh="靖远枸杞 头茬")
    await session.flush()
    assert set(await outbox(session)) == {listing.id}
    assert (await backend.search(query("枸杞"))).total == 0

    drained = await sync.drain(maker, backend)
    assert drained.claimed >= 1
    assert (drained.written, drained.error) == (1, None)
    assert await outbox(session) == []
    hit = (await backend.search(query("枸杞"))).hits[0]
    assert hit.document is not None and hit.document.poor_share_bp == 6000

    # the cooperative is renamed: its listings follow
    supply.cooperative.name_zh = "靖远县枸杞产销专业合作社"
    await session.flush()
    assert await outbox(session) == [listing.id]
    await sync.drain(maker, backend)
    assert [h.id for h in (await backend.search(query("产销"))).hits] == [str(listing.id)]

    # more is bought from the poor household: the share moves
    await purchase(session, supply.lot, supply.poor, grams=100_000, price_per_kg=4000)
    await session.flush()
    await sync.drain(maker, backend)
    hit = (await backend.search(query("枸杞"))).hits[0]
    assert hit.document is not None and hit.document.poor_share_bp == 8000

    # the platform withdraws the verification: gone from search
    await organisations_service.reject(
        session,
        organisation_id=supply.cooperative.id,
        operator_id=supply.owner.id,
        reason="资质过期",
    )
    await sync.drain(maker, backend)
    assert (await backend.search(query("枸杞"))).total == 0


async def test_a_countys_poverty_flag_reaches_the_index(connection, session, engine):
    """An official designating the cooperative's county (or lifting it) changes which listings
    `poverty_only` finds, after one worker cycle: the county's listings are queued."""
    backend = PostgresSearch(engine, connection=connection)
    maker = _rolled_back_maker(connection)
    supply = await make_supply(session)
    listing = await make_listing(session, supply, title_zh="靖远枸杞 头茬")
    await session.flush()
    county = supply.cooperative.region_code
    await regions_service.set_poverty_flag(session, code=county, designated=False)
    await sync.drain(maker, backend)
    poverty_only = Query(text="枸杞", poverty_counties_only=True)
    assert (await backend.search(poverty_only)).total == 0

    await regions_service.set_poverty_flag(session, code=county, designated=True)
    assert await outbox(session) == [listing.id]
    await sync.drain(maker, backend)
    [hit] = (await backend.search(poverty_only)).hits
    assert hit.id == str(listing.id)
    assert hit.document is not None and hit.document.is_poverty_county

    await regions_service.set_poverty_flag(session, code=county, designated=False)
    await sync.drain(maker, backend)
    assert (await backend.search(poverty_only)).total == 0


def query(q: str) -> Any:
    return Query(text=q)


async def test_an_older_document_never_replaces_a_newer_one(connection, session, engine):
    """Two workers race: the one that read the listing first sends last. The index keeps the
    newer version."""
    backend = PostgresSearch(engine, connection=connection)
    maker = _rolled_back_maker(connection)
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    await session.flush()
    conn = await session.connection()
    old = await sync.changes_for(conn, [listing.id])  # the slow worker reads version n
    await listings_service.adjust(
        session, listing=listing, quantity=-5, reason="盘点", user_id=supply.owner.id
    )
    await session.flush()
    await sync.drain(maker, backend)  # the fast worker sends version n + 1
    await session.refresh(listing)
    assert await indexed_version(session, listing.id) == listing.version
    failures = await backend.index(old.documents, connection=conn)  # the slow one, late
    assert failures == []
    assert await indexed_version(session, listing.id) == listing.version
    hit = (await backend.search(query("枸杞"))).hits[0]
    assert hit.document is not None and hit.document.quantity_available == 45


async def test_listings_whose_window_closes_are_swept_out(connection, session, engine):
    backend = PostgresSearch(engine, connection=connection)
    maker = _rolled_back_maker(connection)
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    await session.flush()
    conn = await session.connection()
    assert await sync.sweep(conn) == 0  # the first sweep only starts the clock
    await sync.drain(maker, backend)
    assert (await backend.search(query("枸杞"))).total == 1

    # the window ends (written without a trigger, as time passing would)
    await conn.execute(text("SET LOCAL session_replication_role = replica"))
    await conn.execute(
        text("UPDATE listing SET valid_until = statement_timestamp() WHERE id = :id"),
        {"id": listing.id},
    )
    await conn.execute(text("SET LOCAL session_replication_role = origin"))
    assert await outbox(session) == []
    version = await session.scalar(
        text("SELECT version FROM listing WHERE id = :id"), {"id": listing.id}
    )
    assert await sync.sweep(conn) == 1
    # touched: a new version, so that nothing read before the window closed can win over it
    assert (
        await session.scalar(text("SELECT version FROM listing WHERE id = :id"), {"id": listing.id})
        == version + 1
    )
    assert await outbox(session) == [listing.id]
    await sync.drain(maker, backend)
    assert (await backend.search(query("枸杞"))).total == 0


async def test_a_new_day_touches_the_certified_listings(connection, session):
    """Certificates expire by the day: on a new day in China the certified listings get a new
    version and are queued; the others are left alone."""
    supply = await make_supply(session)
    certified, plain = await make_listing(session, supply), await make_listing(session, supply)
    await session.flush()
    conn = await session.connection()
    await sync.sweep(conn)
    await conn.execute(text("SET LOCAL session_replication_role = replica"))
    await conn.execute(
        text("UPDATE listing SET certification_ids = ARRAY[gen_random_uuid()] WHERE id = :id"),
        {"id": certified.id},
    )
    await conn.execute(text("SET LOCAL session_replication_role = origin"))
    await conn.execute(text("DELETE FROM search_outbox"))
    await conn.execute(text("UPDATE search_state SET value = '2000-01-01' WHERE key = 'day'"))
    versions = dict(list(await conn.execute(text("SELECT id, version FROM listing"))))
    assert await sync.sweep(conn) == 1
    assert await outbox(session) == [certified.id]
    after = dict(list(await conn.execute(text("SELECT id, version FROM listing"))))
    assert after == {**versions, certified.id: versions[certified.id] + 1}
    assert plain.id in after


async def test_a_re_imported_registry_queues_every_active_listing(connection, session):
    supply = await make_supply(session)
    await make_listing(session, supply)
    await make_listing(session, supply)
    await session.flush()
    conn = await session.connection()
    await sync.sweep(conn)
    await conn.execute(text("DELETE FROM search_outbox"))
    await conn.execute(text("UPDATE registry_version SET version = version + 1"))
    assert await sync.sweep(conn) == 2
    assert await sync.sweep(conn) == 0


async def test_a_refused_document_is_retried_then_parked_with_its_reason(connection, session):
    """A backend that refuses one document: the rest of the batch is applied, the refused
    one retried with a delay (as often as the refusal comes, within RETRY_HOURS: a cluster
    refusing writes for a while loses nothing), and parked once its change is older."""
    from search.base import ItemFailure

    supply = await make_supply(session)
    good = await make_listing(session, supply)
    bad = await make_listing(session, supply)
    await session.flush()

    class Refusing:
        name = "refusing"

        def __init__(self) -> None:
            self.sent: list[str] = []

        async def index(self, documents, target=None):  # type: ignore[no-untyped-def]
            self.sent += [d.id for d in documents]
            return [ItemFailure(str(bad.id), "mapper_parsing_exception: bad title", True)]

        async def delete(self, deletions, target=None):  # type: ignore[no-untyped-def]
            return []

    maker = _rolled_back_maker(connection)
    backend = Refusing()
    first = await sync.drain_once(maker, backend)  # type: ignore[arg-type]
    assert (first.claimed, first.retried, first.parked) == (2, 1, 0)
    assert await outbox(session) == [bad.id]
    for _ in range(20):
        await session.execute(
            text("UPDATE search_outbox SET available_at = now() - interval '1 s'")
        )
        again = await sync.drain_once(maker, backend)  # type: ignore[arg-type]
        assert (again.retried, again.parked) == (1, 0)
    delay = await session.scalar(text("SELECT available_at - now() FROM search_outbox"))
    assert (
        dt.timedelta(seconds=sync.MAX_BACKOFF_S - 5)
        < delay
        <= dt.timedelta(seconds=sync.MAX_BACKOFF_S)
    )
    await session.execute(
        text(
            "UPDATE search_outbox SET available_at = now() - interval '1 s', "
            "created_at = now() - make_interval(hours => :h + 1)"
        ),
        {"h": sync.RETRY_HOURS},
    )
    assert (await sync.drain_once(maker, backend)).parked == 1  # type: ignore[arg-type]
    parked = await sync.parked(await session.connection())
    assert [p["listing_id"] for p in parked] == [str(bad.id)]
    assert "bad title" in parked[0]["last_error"]
    assert (await sync.backlog(await session.connection())).parked == 1
    assert await sync.retry_parked(await session.connection()) == 1
    assert (await sync.backlog(await session.connection())).pending == 1
    assert str(good.id) in backend.sent


async def test_reindex_rebuilds_a_damaged_index_and_check_says_so(clean_db, engine):
    maker = create_sessionmaker(engine)
    backend = PostgresSearch(engine)
    async with maker() as session, session.begin():
        supply = await make_supply(session)
        listings = [await make_listing(session, supply) for _ in range(3)]
    await sync.drain(maker, backend)
    assert (await sync.check(maker, backend)).in_step

    async with engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM search_listing WHERE id = :id"), {"id": str(listings[0].id)}
        )
        await conn.execute(
            text("UPDATE search_listing SET version = 0 WHERE id = :id"),
            {"id": str(listings[1].id)},
        )
        await conn.execute(
            text(
                "INSERT INTO search_listing SELECT 'ghost', version, terms, title_zh, "
                "category_code, province_code, city_code, county_code, is_poverty_county, "
                "certifications, storage_class, sale_mode, unit_price_fen, quantity_available, "
                "poor_share_bp, latitude, longitude, published_at FROM search_listing LIMIT 1"
            )
        )
    damaged = await sync.check(maker, backend)
    assert not damaged.in_step
    assert (damaged.database, damaged.index) == (3, 3)
    assert {s[0] for s in damaged.stale} == {str(listings[0].id), str(listings[1].id)}

    # one reindex at a time: while another holds the lock, a second changes nothing
    async with engine.connect() as other:
        assert await other.scalar(sync._TRY_REINDEX_LOCK)
        with pytest.raises(RuntimeError, match="another reindex is running"):
            await sync.reindex(maker, backend, batch=2)
        assert not (await sync.check(maker, backend)).in_step
        await other.execute(sync._REINDEX_UNLOCK)
        await other.commit()

    done = await sync.reindex(maker, backend, batch=2)
    assert (done.documents, done.deletions, done.failures) == (3, 1, [])
    assert (await sync.check(maker, backend)).in_step
    # and the lock is free again once it is done
    assert (await sync.reindex(maker, backend, batch=2)).documents == 3


async def test_concurrent_workers_send_each_change_once(clean_db, engine):
    """Workers claim with FOR UPDATE SKIP LOCKED: together they take every row exactly once."""
    maker = create_sessionmaker(engine)
    backend = PostgresSearch(engine)
    async with maker() as session, session.begin():
        supply = await make_supply(session, poor_grams=600_000)
        for _ in range(40):
            await make_listing(session, supply, quantity=10)
    results = await asyncio.gather(*(sync.drain(maker, backend, batch=5) for _ in range(4)))
    assert sum(r.claimed for r in results) == 40
    assert sum(r.written for r in results) == 40
    async with maker() as session:
        assert await outbox(session) == []
    assert (await sync.check(maker, backend)).in_step


async def test_a_worker_never_writes_back_a_listing_a_request_is_hiding(clean_db, engine):
    """The worker holds the listings it sends (PostgreSQL writes the search rows in its
    transaction) and skips one that a request is changing at that moment, without waiting for
    it: its older document never comes back after the request's delete, and the listing's
    outbox row is taken again a second later."""
    maker = create_sessionmaker(engine)
    backend = PostgresSearch(engine)
    async with maker() as session, session.begin():
        supply = await make_supply(session)
        listing = await make_listing(session, supply, title_zh="靖远枸杞 头茬")
        other = await make_listing(session, supply, title_zh="靖远枸杞 二茬")
    await sync.drain(maker, backend)
    async with maker() as session, session.begin():  # a change elsewhere queues both
        await session.execute(
            text("UPDATE organisation SET name_zh = name_zh || '社' WHERE id = :id"),
            {"id": supply.cooperative.id},
        )

    async with maker() as request, request.begin():  # a request pauses one
        paused = await listings_service.get_listing(request, listing_id=listing.id, lock=True)
        cooperative = await organisations_service.get_organisation(
            request, organisation_id=supply.cooperative.id
        )
        await listings_service.act(
            request, listing=paused, organisation=cooperative, event="pause", user_id=None
        )
        await request.flush()
        assert await sync.index_own_changes(request, backend) == 1  # as the app does
        # the worker sends the other one and leaves this one, without waiting
        drained = await asyncio.wait_for(sync.drain_once(maker, backend), timeout=5)
        assert (drained.claimed, drained.written, drained.error) == (2, 1, None)
    async with maker() as session:
        assert await outbox(session) == [listing.id]
        assert await indexed_version(session, listing.id) is None
        assert await indexed_version(session, other.id) is not None
    assert (await sync.drain_once(maker, backend)).claimed == 0  # not before its second
    await asyncio.sleep(1.1)
    again = await sync.drain(maker, backend)
    assert (again.claimed, again.written) == (1, 1)
    async with maker() as session:
        assert await indexed_version(session, listing.id) is None
    assert [h.id for h in (await backend.search(query("枸杞"))).hits] == [str(other.id)]
    assert (await sync.check(maker, backend)).in_step


async def test_an_outbox_row_of_no_listing_is_taken_not_deferred_for_ever(clean_db, engine):
    maker = create_sessionmaker(engine)
    backend = PostgresSearch(engine)
    async with maker() as session, session.begin():
        await session.execute(
            text("INSERT INTO search_outbox (listing_id) VALUES (:id)"), {"id": uuid.uuid4()}
        )
    drained = await sync.drain_once(maker, backend)
    assert (drained.claimed, drained.written, drained.error) == (1, 0, None)
    async with maker() as session:
        assert await outbox(session) == []


async def test_a_reindex_leaves_a_listing_being_changed_to_the_worker(clean_db, engine):
    maker = create_sessionmaker(engine)
    backend = PostgresSearch(engine)
    async with maker() as session, session.begin():
        supply = await make_supply(session)
        busy, _calm = [await make_listing(session, supply) for _ in range(2)]
    await sync.drain(maker, backend)
    async with maker() as changer, changer.begin():
        await changer.execute(
            text("SELECT id FROM listing WHERE id = :id FOR UPDATE"), {"id": busy.id}
        )
        done = await asyncio.wait_for(sync.reindex(maker, backend, batch=10), timeout=10)
        assert (done.documents, done.failures) == (1, [])
    async with maker() as session:
        assert await outbox(session) == [busy.id]
    await sync.drain(maker, backend)
    assert (await sync.check(maker, backend)).in_step


# ---------------------------------------------------------------- the API's rules


async def test_search_parameters_are_checked(client, session):
    async def refused(field: str, **params: Any) -> None:
        response = await client.get("/search/listings", params=params)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(field in f for f in fields), (field, fields)

    await refused("colour", colour="red")  # unknown parameter
    await refused("limit", limit=101)
    await refused("category", category="dried\x00fruit")  # never into the SQL
    await refused("price_min", price_min=-1)
    await refused("region", region="62")
    await refused("sort", sort="cheapest")
    await refused("sort", sort="distance")  # no destination
    await refused("max_km", max_km=50)
    await refused("destination", destination="999999")
    await refused("near", near="91,200")
    await refused("price_max", price_min=500, price_max=100)
    await refused("cursor", cursor="not-a-cursor")
    await refused("q", q="枸" * 101)


async def test_facets_cursor_and_suggest(client, session):
    supply = await make_supply(session, poor_grams=600_000)
    for price in (900, 1800, 2500, 6800, 12_000):
        listing = await make_listing(session, supply, unit_price_fen=price, price_tiers=[])
    await session.flush()
    await sync.index_own_changes(session, client._transport.app.state.search)  # type: ignore[attr-defined]

    page = await search(client, q="枸杞", sort="price_asc", limit=2, facets="true")
    assert page["total"] == 5
    assert [i["unit_price_fen"] for i in page["items"]] == [900, 1800]
    assert page["facets"]["province"] == [{"value": "620000", "label": "甘肃省", "count": 5}]
    assert page["facets"]["storage_class"] == [{"value": "ambient", "label": "常温", "count": 5}]
    assert [(f["label"], f["count"]) for f in page["facets"]["price"]] == [
        ("0–10 元", 1),
        ("10–30 元", 2),
        ("30–60 元", 0),
        ("60–100 元", 1),
        ("100 元以上", 1),
    ]
    second = await search(client, q="枸杞", sort="price_asc", limit=2, cursor=page["next_cursor"])
    assert [i["unit_price_fen"] for i in second["items"]] == [2500, 6800]
    other_sort = await client.get(
        "/search/listings", params={"q": "枸杞", "sort": "newest", "cursor": page["next_cursor"]}
    )
    problem(other_sort, 422, "invalid")

    suggested = await client.get("/search/suggest", params={"q": "jingy"})
    assert suggested.status_code == 200
    assert suggested.json()["items"] == [listing.title_zh]
    assert (await client.get("/search/suggest", params={"q": ""})).status_code == 422


async def test_search_fast_route_answers_as_the_fastapi_route(
    client, session, connection, settings, engine
):
    """The plain Starlette route in front of GET /search/listings answers byte for byte what
    the FastAPI route (kept for the OpenAPI document) answers: hits, facets with labels,
    distances, cursors, and the same problems for bad parameters."""
    from tests.conftest import build_app
    from tests.test_listings import _without_request_id, drop_plain_route

    supply = await make_supply(session, poor_grams=600_000)
    for price in (900, 1800, 2500):
        await make_listing(session, supply, unit_price_fen=price, price_tiers=[])
    await session.flush()
    await sync.index_own_changes(session, client._transport.app.state.search)  # type: ignore[attr-defined]

    app = build_app(settings, _rolled_back_maker(connection), engine, connection)
    drop_plain_route(app, "/search/listings")
    first = await search(client, q="枸杞", limit=2, sort="price_asc")
    cases: list[dict[str, Any]] = [
        {"q": "枸杞", "facets": "true", "destination": "110105"},
        {"q": "gouqi", "sort": "distance", "near": "39.9042,116.4074", "limit": "1"},
        {"q": "枸杞", "limit": "2", "sort": "price_asc", "cursor": first["next_cursor"]},
        {"q": "wolfbery", "certification": "organic", "poverty_only": "1"},
        {"region": "620000", "price_min": "1000", "price_max": "3000", "facets": "TRUE"},
        {"colour": "red"},
        {"limit": "101", "sort": "cheapest"},
        {"destination": "999999"},
        {"sort": "distance"},
        {"q": "枸杞", "sort": "newest", "cursor": first["next_cursor"]},
        {"price_min": "abc"},
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as fastapi:
        for params in cases:
            fast = await client.get("/search/listings", params=params)
            slow = await fastapi.get("/search/listings", params=params)
            assert _without_request_id(fast) == _without_request_id(slow), params
            if fast.status_code == 200:
                assert fast.content == slow.content, params
    facets = (await search(client, q="枸杞", facets="true"))["facets"]
    assert facets["province"] == [{"value": "620000", "label": "甘肃省", "count": 3}]


async def test_a_listing_of_an_unverified_cooperative_is_never_found(client, session):
    supply = await make_supply(session)
    body = listing_body(supply)
    created = await client.post(
        listings_url(supply), headers=bearer(supply.token) | key(), json=body
    )
    listing_id = created.json()["id"]
    await action(client, supply, listing_id, "publish")
    assert ids(await search(client, q="枸杞")) == [listing_id]
    await session.execute(
        text("UPDATE organisation SET verification_status = 'pending' WHERE id = :id"),
        {"id": supply.cooperative.id},
    )
    await session.flush()
    await sync.index_own_changes(session, client._transport.app.state.search)  # type: ignore[attr-defined]
    assert ids(await search(client, q="枸杞")) == []


async def test_counts_stop_at_the_limit_and_say_so(engine, connection, session):
    """A common word is not counted to the last match: past the limit the total is a lower
    bound (total_exact false) and the facets count that many matches, the newest."""
    from search.base import PRICE_BUCKETS, Query

    supply = await make_supply(session, poor_grams=600_000)
    for price in (500, 1500, 2500, 4000, 7000, 8000, 12000):  # one or two per price bucket
        await make_listing(session, supply, quantity=10, unit_price_fen=price, price_tiers=[])
    await session.flush()
    await sync.index_own_changes(session, PostgresSearch(engine, connection=connection))
    capped = PostgresSearch(engine, connection=connection, count_limit=5)
    result = await capped.search(Query(text="枸杞", facets=True, limit=100))
    assert (result.total, result.total_exact, len(result.hits)) == (5, False, 7)
    assert sum(f.count for f in result.facets["storage_class"]) == 5
    # the facets count the newest five matches, whatever the sort: they stay put while the
    # buyer re-sorts or pages
    newest = (
        await session.execute(
            text("SELECT unit_price_fen FROM search_listing ORDER BY published_at DESC, id LIMIT 5")
        )
    ).scalars()
    buckets: dict[str, int] = {}
    for price in newest:
        low, high = next((lo, hi) for lo, hi in PRICE_BUCKETS if hi is None or price < hi)
        key = f"{low}-{high if high is not None else ''}"
        buckets[key] = buckets.get(key, 0) + 1
    for sort in ("relevance", "price_asc", "price_desc", "newest", "poor_share"):
        for text_ in ("枸杞", ""):
            found = await capped.search(Query(text=text_, facets=True, sort=sort, limit=2))
            assert (found.total, found.total_exact) == (5, False), sort
            assert {f.value: f.count for f in found.facets["price"] if f.count} == buckets, sort
    exact = await PostgresSearch(engine, connection=connection).search(Query(text="枸杞"))
    assert (exact.total, exact.total_exact) == (7, True)
