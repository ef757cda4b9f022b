"""The search sync against a real search server: the outbox through an outage, an index lost
or emptied behind our back, and a reindex that serves queries throughout.

osmem-server (an in-memory OpenSearch-compatible server, see TESTING.md) stands in for
Elasticsearch; the app, the worker and PostgreSQL are the real ones, and every change goes
through the API with real commits."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from market.config import Settings
from market.db import create_sessionmaker
from market.listing_search import service as sync
from market.listing_search import tasks
from search.base import Query
from search.elasticsearch import ElasticsearchSearch, make_client
from tests.conftest import build_app
from tests.factories import bearer
from tests.factories_listings import Supply, make_listing, make_supply
from tests.peers import search_server
from tests.test_listings import key, listings_url


@pytest.fixture(scope="module")
def osmem() -> Iterator[Any]:
    with search_server() as server:
        # its first answers are slow: warmed here, not in a test with one-second timeouts
        httpx.put(f"{server.url}/warm-up", timeout=30)
        httpx.delete(f"{server.url}/warm-up", timeout=30)
        yield server


@pytest.fixture
async def es(osmem: Any) -> AsyncIterator[ElasticsearchSearch]:
    """A fresh index (own prefix) on the shared server; short timeouts so that a paused
    server is noticed in a second, as a production client with its defaults would in ten."""
    client = make_client(osmem.url, opensearch_compat=True).options(
        request_timeout=1, max_retries=0
    )
    backend = ElasticsearchSearch(client, index_prefix=f"t{uuid.uuid4().hex[:10]}")
    yield backend
    try:
        await backend.drop()
    finally:
        await backend.close()


@pytest.fixture
def maker(engine: AsyncEngine, clean_db: None) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def app_client(
    settings: Settings, engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], es: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on real commits, searching Elasticsearch."""
    app = build_app(settings, maker, engine)
    app.state.search = es
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def listings_of(
    maker: async_sessionmaker[AsyncSession], count: int
) -> tuple[Supply, list[str]]:
    async with maker() as session, session.begin():
        supply = await make_supply(session, poor_grams=6_000_000)
        made = [await make_listing(session, supply, quantity=100) for _ in range(count)]
        return supply, [str(x.id) for x in made]


async def in_step(maker: async_sessionmaker[AsyncSession], es: ElasticsearchSearch) -> None:
    """Counts, and the version of every visible listing, agree; nothing hidden is indexed."""
    await es.refresh()
    checked = await sync.check(maker, es, sample=10_000)
    assert checked.pending == 0 and checked.parked == 0
    assert checked.database == checked.index, checked
    assert checked.sampled == checked.database
    assert checked.stale == []


class Worker:
    """The worker loop running beside the test, as inside the server."""

    def __init__(self, maker: async_sessionmaker[AsyncSession], search: Any) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(tasks.run(maker, search, interval=0.1, stop=self.stop))

    async def settled(self, maker: async_sessionmaker[AsyncSession], seconds: float = 60) -> None:
        """Wait until the outbox is empty."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            async with maker() as session:
                queue = await sync.backlog(await session.connection())
            if queue.pending == 0:
                return
            assert loop.time() < deadline, f"outbox not drained: {queue}"
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=30)


async def test_writes_succeed_while_the_search_server_is_paused_and_the_index_catches_up(
    app_client: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession], es: Any, osmem: Any
):
    supply, ids = await listings_of(maker, 20)
    worker = Worker(maker, es)
    try:
        await worker.settled(maker)
        await in_step(maker, es)
        headers = bearer(supply.token)

        async def change(i: int) -> httpx.Response:
            listing_id = ids[i % len(ids)]
            kind = (i // len(ids)) % 5  # a round of one kind of change over every listing
            if kind == 0:
                return await app_client.post(
                    listings_url(supply, listing_id, "stock-adjustments"),
                    headers=headers | key(),
                    json={"quantity": -1, "reason": f"盘点 {i}"},
                )
            if kind == 1:
                return await app_client.patch(
                    listings_url(supply, listing_id),
                    headers=headers,
                    json={"unit_price_fen": 7000 + i},
                )
            if kind == 2:
                return await app_client.post(
                    listings_url(supply, listing_id, "pause"), headers=headers
                )
            if kind == 3:
                return await app_client.post(
                    listings_url(supply, listing_id, "resume"), headers=headers
                )
            return await app_client.patch(
                listings_url(supply, listing_id),
                headers=headers,
                json={"title_zh": f"靖远枸杞 第{i}批"},
            )

        statuses = []
        for i in range(200):
            if i == 60:
                os.kill(osmem.pid, signal.SIGSTOP)
            if i == 170:
                os.kill(osmem.pid, signal.SIGCONT)
            response = await change(i)
            statuses.append(response.status_code)
            assert response.status_code in (200, 201), response.text
            if i == 150:  # the outage has been seen: changes wait
                async with maker() as session:
                    queue = await sync.backlog(await session.connection())
                assert queue.pending > 0 and queue.parked == 0
        await worker.settled(maker)
        await in_step(maker, es)

        # what buyers see is the database's latest title and price
        result = await es.search(Query(text="第199批"))
        assert [h.id for h in result.hits] == [ids[199 % len(ids)]]
    finally:
        os.kill(osmem.pid, signal.SIGCONT)
        await worker.close()


async def test_an_out_of_order_stale_update_is_rejected(
    maker: async_sessionmaker[AsyncSession], es: Any
):
    _, ids = await listings_of(maker, 1)
    await es.ensure_index()
    await sync.drain(maker, es)
    async with maker() as session, session.begin():
        stale = await sync.changes_for(await session.connection(), [uuid.UUID(ids[0])])
        await session.execute(
            text("UPDATE listing SET unit_price_fen = 1234 WHERE id = :id"), {"id": ids[0]}
        )
    await sync.drain(maker, es)
    assert await es.index(stale.documents) == []  # the late, older write: ignored, no failure
    await es.refresh()
    hit = (await es.search(Query(text="枸杞"))).hits[0]
    assert hit.document is not None and hit.document.unit_price_fen == 1234
    await in_step(maker, es)


async def test_a_lost_or_emptied_index_is_rebuilt_not_left_half_full(
    maker: async_sessionmaker[AsyncSession], es: Any
):
    await listings_of(maker, 12)
    assert await sync.ensure_index(maker, es) is True  # first start: created and queued
    await sync.drain(maker, es)
    await in_step(maker, es)
    assert await sync.ensure_index(maker, es) is False

    # someone deletes the index: recreated and refilled
    await es.client.indices.delete(index=",".join(await es._alias_indices()))
    assert await sync.ensure_index(maker, es) is True
    await sync.drain(maker, es)
    await in_step(maker, es)

    # someone empties it (a new empty index behind the alias) while a change waits in the
    # outbox: refilled all the same, and once queued not queued again while it drains
    empty = await es.create_index()
    await es.switch_alias(empty)
    assert await es.count() == 0
    async with maker() as session, session.begin():
        await session.execute(
            text("INSERT INTO search_outbox (listing_id) SELECT id FROM listing LIMIT 1")
        )
    assert await sync.ensure_index(maker, es) is True
    assert await sync.ensure_index(maker, es) is False
    await sync.drain(maker, es)
    await in_step(maker, es)


class _NoTemplateRights:
    """The cluster as an API key without the right to put index templates sees it: the
    index check fails, every document write works."""

    def __init__(self, inner: ElasticsearchSearch) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def ensure_index(self) -> bool:
        raise PermissionError("403 security_exception: no indices:admin/index_template/put")


async def test_the_outbox_drains_while_the_index_check_fails(
    maker: async_sessionmaker[AsyncSession], es: Any
):
    await es.ensure_index()
    await listings_of(maker, 5)
    worker = Worker(maker, _NoTemplateRights(es))
    try:
        await worker.settled(maker)
    finally:
        await worker.close()
    await in_step(maker, es)


async def test_reindex_switches_the_alias_while_queries_keep_answering(
    maker: async_sessionmaker[AsyncSession], es: Any
):
    _, ids = await listings_of(maker, 30)
    await sync.ensure_index(maker, es)
    await sync.drain(maker, es)
    await es.refresh()
    before = await es._alias_indices()

    answers: list[int] = []
    done = asyncio.Event()

    async def query_throughout() -> None:
        while not done.is_set():
            answers.append((await es.search(Query(text="枸杞", limit=1))).total)
            await asyncio.sleep(0)

    building = asyncio.Event()

    def advance(n: int) -> None:
        building.set()  # a first batch is in the new index

    async def change_during_reindex() -> None:
        await building.wait()
        async with maker() as session, session.begin():
            await session.execute(
                text("UPDATE listing SET title_zh = '靖远枸杞 改名' WHERE id = :id"),
                {"id": ids[-1]},
            )
        await sync.drain(maker, es)  # the worker writes to the alias and the new index

    querying = asyncio.create_task(query_throughout())
    try:
        result, _ = await asyncio.gather(
            sync.reindex(maker, es, batch=5, advance=advance), change_during_reindex()
        )
    finally:
        done.set()
        await querying
    assert result.documents == 30 and result.failures == []
    assert len(answers) > 3 and set(answers) == {30}
    after = await es._alias_indices()
    assert after == [result.index] and not set(before) & set(after)
    await es.refresh()
    assert [h.id for h in (await es.search(Query(text="改名"))).hits] == [ids[-1]]
    await in_step(maker, es)
    async with maker() as session:
        assert await session.scalar(text("SELECT count(*) FROM search_state")) == 0
