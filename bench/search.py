"""Listing search: indexing throughput, and query latency in the database, in-process and over
HTTP, on --listings generated documents (default 100,000; the issue's targets are stated at
1,000,000).

Data: bench/search_data.py's documents (realistic Chinese titles with Zipf-like word
frequencies, real counties of the gazetteer with their coordinates, cooperatives, categories,
certifications, prices in fen, poor shares), deterministic by seed, streamed in batches of
1,000 into `search_listing` of a fresh migrated database through
`PostgresSearch(engine).index(batch)`; never more than one batch is held. No listing rows: the
search backend and GET /search/listings serve the indexed documents as they are.

Indexing, documents per second:
* PostgreSQL -- `PostgresSearch.index` per batch (analysis, tsvector, upsert, vocabulary)
  against a plain asyncpg COPY of the same documents' JSON into a scratch table without
  indexes, batch by batch in turn: the floor of getting the same data into PostgreSQL;
* the analysis alone (`document_terms` + the tsvector text, Python only) on every tenth batch;
* Elasticsearch -- `ElasticsearchSearch.index` (+ one refresh at the end) on osmem-server, an
  in-memory OpenSearch-compatible test server, for the first tenth of the same documents (at
  most 20,000; it stops after the batch that ends past two minutes), against a bulk request of
  the same JSON into an index that maps no field. osmem figures say nothing about a real
  cluster.

Queries (PostgreSQL backend), one class per row: a rare two-character word, a common word, one
character, pinyin, pinyin initials, a pinyin word looked up in the typo vocabulary, two words
(AND), filters only (province, price range, certification), and the common word with facets.
Per class and side, latencies p50/p95:
* in-db  -- exactly the statements `PostgresSearch.search(Query(...))` sends (recorded with a
            SQLAlchemy `before_cursor_execute` event: same text and parameters), replayed on
            one raw asyncpg connection (in a transaction when they set the typo threshold,
            as the app's read pool runs them), rows fetched; checked to give the
            same hits and total as the search before timing;
* search -- `PostgresSearch.search` in this process, reading on an asyncpg pool made as the
            app makes its read pool;
* http   -- `GET /search/listings` on `market serve` (a subprocess on the benchmark database,
            default PostgreSQL backend), checked to answer the same hits and total. Per class,
            after a short warm-up, the saturating rate is found with --connections closed-loop
            connections for --duration/2 s (wrk when on PATH, else asyncio clients in this
            process), with the CPU each process spends per request; then in each round the
            latency is measured at half that rate for --duration/2 s with a paced open-loop
            client (fixed inter-arrival times over as many keep-alive connections);
* in-db@load -- the in-db statements at the http side's paced rate, on a pool as large as
            the app's read pool: what the database takes under the same load, so that
            http / in-db@load is what the app adds.
In each round every class gets a slice of each side (--duration/8 s, at least 5 queries, for
in-db and search), rotating which side goes first. Targets are printed beside the figures,
never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import harness
from bench.generate import PeakRss, max_rss_bytes
from bench.harness import Options, Tally, err, out
from bench.listing_read import (
    CpuMeter,
    Served,
    _client,
    _environment,
    _market_command,
    free_port,
    run_wrk,
    serve,
)
from bench.search_data import Spec, batches
from market.app import freeze_startup_objects
from market.config import Settings
from market.db import create_engine, plain_url
from market.listings.router import create_read_pool
from search.base import Query, Result
from search.postgres import (
    COUNT_LIMIT,
    PostgresSearch,
    document_terms,
    document_to_json,
    tsvector_text,
)

TITLE = "Listing search"
BATCH = 1_000  # documents per PostgresSearch.index() call and COPY
ES_SHARE = 10  # osmem indexes the first tenth of the documents ...
ES_MAX = 20_000  # ... at most this many
ES_SECONDS = 120.0  # ... and stops after the batch that ends past this many seconds
ES_BATCH = 250  # documents per ElasticsearchSearch.index() call and bulk request
ANALYSIS_EVERY = 10  # time the analysis alone on every tenth batch
MIN_SAMPLES = 5  # in-process queries per side, class and round, however slow
TARGET_SCALE = 1_000_000  # the listings the targets are stated for
TARGET_RARE_MS = 10.0
TARGET_FACETS_MS = 50.0
TARGET_HTTP_RATIO = 2.0
HTTP_PATH = "/search/listings"


@dataclass(frozen=True)
class Case:
    key: str
    name: str
    query: Query


CASES: tuple[Case, ...] = (
    Case("rare", "rare 2-char word", Query(text="枇杷")),
    Case("common", "common word", Query(text="枸杞")),
    Case("char", "one character", Query(text="枣")),
    Case("pinyin", "pinyin", Query(text="gouqi")),
    Case("initials", "pinyin initials", Query(text="gq")),
    Case("lookup", "pinyin, typo lookup", Query(text="jingyuan")),
    Case("and", "two words (AND)", Query(text="靖远 红枣")),
    Case(
        "filters",
        "filters only",
        Query(
            region_code="620000",
            price_min_fen=2_000,
            price_max_fen=8_000,
            certification="green_food",
        ),
    ),
    Case("facets", "common + facets", Query(text="枸杞", facets=True)),
)


def describe_query(query: Query) -> str:
    parts = [f"q={query.text}"] if query.text else []
    parts += [f"{k}={v}" for k, v in http_params(query).items() if k != "q"]
    return " ".join(parts)


def http_params(query: Query) -> dict[str, str]:
    """The query as GET /search/listings parameters (only what differs from the defaults)."""
    params: dict[str, str] = {}
    if query.text:
        params["q"] = query.text
    for name, value in (
        ("category", query.category),
        ("region", query.region_code),
        ("certification", query.certification),
        ("storage_class", query.storage_class),
        ("sale_mode", query.sale_mode),
        ("price_min", query.price_min_fen),
        ("price_max", query.price_max_fen),
        ("min_poor_share", query.min_poor_share_bp),
        ("min_available", query.min_available),
        ("max_km", query.max_distance_km),
        ("cursor", query.cursor),
    ):
        if value is not None:
            params[name] = str(value)
    if query.poverty_counties_only:
        params["poverty_only"] = "true"
    if query.near is not None:
        params["near"] = f"{query.near.latitude},{query.near.longitude}"
    if query.sort != "relevance":
        params["sort"] = query.sort
    if query.limit != 20:
        params["limit"] = str(query.limit)
    if query.facets:
        params["facets"] = "true"
    return params


def http_path(query: Query) -> str:
    return HTTP_PATH + "?" + urllib.parse.urlencode(http_params(query))


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted samples; nan when there are none."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


# ---------------------------------------------------------------- loading and indexing


@dataclass
class Loaded:
    documents: int = 0
    batches: int = 0
    index: Tally = field(default_factory=Tally)
    copy: Tally = field(default_factory=Tally)
    analysis: Tally = field(default_factory=Tally)
    failures: int = 0
    vacuum_seconds: float = 0.0
    checkpointed: bool = False
    peak_rss: int = 0
    rss_before: int = 0
    table_bytes: int = 0
    terms_index_bytes: int = 0
    vocabulary: int = 0
    seconds: float = 0.0


SCRATCH = "bench_search_copy"


def _json_rows(batch: list[Any]) -> list[tuple[str, str]]:
    return [(d.id, json.dumps(document_to_json(d), ensure_ascii=False)) for d in batch]


async def load(url: str, engine: AsyncEngine, spec: Spec, bar: Any) -> Loaded:
    """Stream the documents into search_listing with PostgresSearch.index, batch by batch,
    each batch also copied (as JSON) into a scratch table with raw asyncpg, in turn."""
    from search.analysis import index_terms

    index_terms("预热 warm-up")  # the segmenter and dictionaries load once, untimed
    search = PostgresSearch(engine)
    conn = await asyncpg.connect(plain_url(url))
    loaded = Loaded(rss_before=harness.process_rss_bytes())
    total_batches = -(-spec.listings // BATCH)
    group = max(1, total_batches // 10)  # tallies per tenth of the load, for the spread
    task = bar.add_task(f"index {spec.listings:,} documents", total=spec.listings)
    started = harness.now()
    try:
        await conn.execute(f"CREATE TABLE {SCRATCH} (id text NOT NULL, document jsonb NOT NULL)")
        pending = {"index": [0, 0.0], "copy": [0, 0.0]}
        with PeakRss() as sampler:
            for number, batch in enumerate(batches(spec, BATCH)):
                order = ("index", "copy") if number % 2 == 0 else ("copy", "index")
                for side in order:
                    start = harness.now()
                    if side == "index":
                        loaded.failures += len(await search.index(batch))
                    else:
                        await conn.copy_records_to_table(
                            SCRATCH, records=_json_rows(batch), columns=["id", "document"]
                        )
                    pending[side][0] += len(batch)
                    pending[side][1] += harness.now() - start
                if number % ANALYSIS_EVERY == 0:
                    start = harness.now()
                    for doc in batch:
                        tsvector_text(document_terms(doc))
                    loaded.analysis.add(len(batch), harness.now() - start)
                loaded.documents += len(batch)
                loaded.batches += 1
                if loaded.batches % group == 0 or loaded.documents == spec.listings:
                    for side, tally in (("index", loaded.index), ("copy", loaded.copy)):
                        count, seconds = pending[side]
                        if count:
                            tally.add(int(count), float(seconds))
                        pending[side] = [0, 0.0]
                bar.update(task, advance=len(batch))
        loaded.peak_rss = sampler.peak
        await conn.execute(f"DROP TABLE {SCRATCH}")
        start = harness.now()
        await conn.execute("VACUUM ANALYZE search_listing")
        await conn.execute("VACUUM ANALYZE search_vocabulary")
        # write out what the load and the vacuum dirtied now, not in a checkpoint that falls
        # into the query phase (needs superuser or pg_checkpoint; skipped without)
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
            loaded.checkpointed = True
        loaded.vacuum_seconds = harness.now() - start
        loaded.table_bytes = int(
            await conn.fetchval("SELECT pg_total_relation_size('search_listing')")
        )
        loaded.terms_index_bytes = int(
            await conn.fetchval("SELECT pg_relation_size('ix_search_listing_terms')")
        )
        loaded.vocabulary = int(await conn.fetchval("SELECT count(*) FROM search_vocabulary"))
        count = int(await conn.fetchval("SELECT count(*) FROM search_listing"))
        if count != spec.listings:
            raise SystemExit(f"search_listing holds {count:,} rows, not {spec.listings:,}")
    finally:
        await conn.close()
    loaded.seconds = harness.now() - started
    return loaded


@dataclass
class EsLoaded:
    status: str  # "ok" or why it was skipped
    documents: int = 0
    index: Tally = field(default_factory=Tally)
    bulk: Tally = field(default_factory=Tally)
    refresh_seconds: float = 0.0
    failures: int = 0
    stopped_early: bool = False


@contextlib.contextmanager
def osmem() -> Iterator[Any]:
    from osmem_server import OsmemServer

    server = OsmemServer.start(addr="127.0.0.1:0")
    try:
        yield server
    finally:
        server.close()


async def es_load(es_url: str, spec: Spec, budget: float, bar: Any) -> EsLoaded:
    """Index a prefix of the same documents with ElasticsearchSearch.index and, batch by batch
    in turn, bulk the same JSON into an index that maps nothing (the transport floor)."""
    from search.elasticsearch import ElasticsearchSearch, make_client

    missing = [
        name
        for name in ("ensure_index", "index", "refresh", "drop")
        if not hasattr(ElasticsearchSearch, name)
    ]
    if missing:
        return EsLoaded(f"skipped: ElasticsearchSearch has no {', '.join(missing)} yet")
    client = make_client(es_url, opensearch_compat=True)
    es = ElasticsearchSearch(client, index_prefix="bench")
    scratch = "bench-copy"
    result = EsLoaded("ok")
    count = max(1, min(spec.listings // ES_SHARE, ES_MAX))
    task = bar.add_task(f"osmem: index up to {count:,} documents", total=count)
    try:
        await es.ensure_index()
        await client.indices.create(index=scratch, mappings={"dynamic": False, "properties": {}})
        deadline = harness.now() + budget
        for number, batch in enumerate(batches(Spec(count, spec.seed, spec.anchor), ES_BATCH)):
            order = ("index", "bulk") if number % 2 == 0 else ("bulk", "index")
            for side in order:
                start = harness.now()
                if side == "index":
                    result.failures += len(await es.index(batch))
                    result.index.add(len(batch), harness.now() - start)
                else:
                    operations: list[Any] = []
                    for doc in batch:
                        operations += [
                            {"index": {"_index": scratch, "_id": doc.id}},
                            document_to_json(doc),
                        ]
                    response = await client.bulk(operations=operations)
                    if response.get("errors"):
                        raise SystemExit("osmem refused documents of the plain bulk request")
                    result.bulk.add(len(batch), harness.now() - start)
            result.documents += len(batch)
            bar.update(task, advance=len(batch))
            if harness.now() > deadline and result.documents < count:
                result.stopped_early = True
                break
        start = harness.now()
        await es.refresh()
        result.refresh_seconds = harness.now() - start
        result.index.seconds += result.refresh_seconds  # the documents are searchable now
        start = harness.now()
        await client.indices.refresh(index=scratch)
        result.bulk.seconds += harness.now() - start
        bar.update(task, total=result.documents, completed=result.documents)
    finally:
        with contextlib.suppress(Exception):
            await es.drop()
            await client.options(ignore_status=404).indices.delete(index=scratch)
        await es.close()
    return result


# ---------------------------------------------------------------- the search's statements


@dataclass
class Recorded:
    statements: list[tuple[str, tuple[Any, ...]]]
    result: Result


async def record(engine: AsyncEngine, search: PostgresSearch, query: Query) -> Recorded:
    """Run the search once and record every statement it sends, as sent."""
    statements: list[tuple[str, tuple[Any, ...]]] = []

    def on_execute(*args: Any) -> None:
        # (conn, cursor, statement, parameters, context, executemany)
        params = args[3]
        if isinstance(params, dict) or args[5]:
            raise SystemExit("the search sent named or executemany parameters: update bench")
        statements.append((args[2], tuple(params or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        result = await search.search(query)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
    return Recorded(statements, result)


async def replay(conn: asyncpg.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> Any:
    """The statements as the served app's read pool runs them: one after another, in a
    transaction only when they set the typo threshold (local to its transaction), as a
    search with a typo lookup does; returns each statement's rows."""
    if not any("set_config" in sql for sql, _ in statements):
        return [await conn.fetch(sql, *params) for sql, params in statements]
    transaction = conn.transaction(readonly=True)
    await transaction.start()
    try:
        return [await conn.fetch(sql, *params) for sql, params in statements]
    finally:
        await transaction.rollback()


def check_replay(case: Case, recorded: Recorded, rows: list[list[asyncpg.Record]]) -> None:
    """The replayed statements find the same page and total as the search did. Sorted by
    relevance, one statement gives the page and, in its `total` column, the count; otherwise
    the last statement counts (its `total` column)."""
    page = next((r for r in rows if r and "document" in r[0].keys()), [])  # noqa: SIM118
    ids = [r["id"] for r in page if r["id"] is not None][: len(recorded.result.hits)]
    if ids != [h.id for h in recorded.result.hits]:
        raise SystemExit(f"{case.name}: the replayed statements give other hits than search()")
    last = rows[-1]
    total = int(last[0]["total"]) if last and "total" in last[0].keys() else -1  # noqa: SIM118
    # the statements count one past the limit, to tell "exactly the limit" from "more"
    total = min(total, COUNT_LIMIT)
    if total != recorded.result.total:
        raise SystemExit(
            f"{case.name}: the replayed statements count {total}, search() {recorded.result.total}"
        )


async def show_sql(conn: asyncpg.Connection, case: Case, recorded: Recorded) -> None:
    """Each statement with its parameters and EXPLAIN (ANALYZE, BUFFERS), on stderr."""
    err.rule(f"{case.name}: {describe_query(case.query)}")
    transaction = conn.transaction()
    await transaction.start()
    try:
        for sql, params in recorded.statements:
            err.print(" ".join(sql.split()), highlight=False, markup=False)
            err.print(f"parameters: {params!r}", highlight=False, markup=False)
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *params)
            err.print("\n".join(r[0] for r in plan), highlight=False, markup=False)
            await conn.fetch(sql, *params)  # settings it makes hold for the next statement
    finally:
        await transaction.rollback()


# ---------------------------------------------------------------- HTTP load


async def saturate(
    base: str, path: str, seconds: float, connections: int
) -> tuple[int, float, int]:
    """Closed-loop load: requests done, seconds, errors (wrk when on PATH)."""
    wrk = shutil.which("wrk")
    if wrk:
        result = await asyncio.to_thread(run_wrk, wrk, base + path, seconds, connections)
        return result.requests, result.seconds, result.errors
    url = httpx.URL(base)
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(
            _client(url.host, url.port or 80, path, deadline, latencies, errors)
            for _ in range(connections)
        )
    )
    return len(latencies), time.perf_counter() - start, errors[0]


async def paced(
    base: str, path: str, rate: float, seconds: float, connections: int
) -> tuple[list[float], float, int]:
    """Open-loop load at a fixed inter-arrival time 1/rate over up to `connections` keep-alive
    connections: latencies from writing the request to reading the whole response, the rate
    actually sent, errors."""
    url = httpx.URL(base)
    host, port = url.host, url.port or 80
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n".encode()
    queue: asyncio.Queue[float] = asyncio.Queue()
    latencies: list[float] = []
    errors = [0]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (await queue.get()) >= 0:
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    None,
                )
                if length is None:
                    raise SystemExit("the paced client needs a Content-Length in every response")
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if head[9:12] != b"200":
                    errors[0] += 1
        finally:
            writer.close()
            await writer.wait_closed()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    total, sent = await arrivals(queue, rate, seconds, len(workers))
    await asyncio.gather(*workers)
    return latencies, total / sent if sent > 0 else 0.0, errors[0]


async def arrivals(
    queue: asyncio.Queue[float], rate: float, seconds: float, workers: int
) -> tuple[int, float]:
    """Open-loop arrivals: put each arrival's due time on `queue` at fixed intervals 1/rate
    for `seconds` (at least one arrival), then a stop (-1) for each of the `workers`. Returns
    how many arrived and over how many seconds (the last one's interval included)."""
    total = max(1, round(rate * seconds))
    interval = 1.0 / rate
    start = time.perf_counter() + 0.02
    for i in range(total):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(max(due, time.perf_counter()))
    sent = time.perf_counter() - start + interval
    for _ in range(workers):
        queue.put_nowait(-1.0)
    return total, sent


async def paced_replay(
    pool: asyncpg.Pool,
    statements: list[tuple[str, tuple[Any, ...]]],
    rate: float,
    seconds: float,
    connections: int,
) -> list[float]:
    """The in-db side under the load the http side gets: the same open-loop arrivals (fixed
    inter-arrival time 1/rate, up to `connections` in flight), each replaying the statements
    on a connection of a pool as large as the app's read pool. Latencies from the arrival."""
    queue: asyncio.Queue[float] = asyncio.Queue()
    latencies: list[float] = []

    async def worker() -> None:
        while (due := await queue.get()) >= 0:
            async with pool.acquire() as conn:
                await replay(conn, statements)
            latencies.append(time.perf_counter() - due)

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await arrivals(queue, rate, seconds, len(workers))
    await asyncio.gather(*workers)
    return latencies


def check_http(base: str, case: Case, recorded: Recorded) -> str | None:
    """The served app answers the same hits and total; None when it does, else why not."""
    response = httpx.get(base + http_path(case.query), timeout=30)
    if response.status_code == 404:
        return f"not measured: GET {HTTP_PATH} answered 404 (no such route in the app yet)"
    if response.status_code != 200:
        raise SystemExit(
            f"{case.name}: GET {http_path(case.query)} answered {response.status_code}: "
            f"{response.text[:300]}"
        )
    body = response.json()
    ids = [item.get("id") for item in body.get("items", [])]
    if body.get("total") != recorded.result.total or ids != [h.id for h in recorded.result.hits]:
        raise SystemExit(
            f"{case.name}: the served app answers {body.get('total')} results, search() "
            f"{recorded.result.total} (or other hits)"
        )
    return None


# ---------------------------------------------------------------- the measurement


@dataclass
class CaseFigures:
    case: Case
    statements: int = 0
    total: int = 0
    samples: dict[str, list[float]] = field(
        default_factory=lambda: {"in-db": [], "search": [], "http": [], "in-db@load": []}
    )
    saturating: Tally = field(default_factory=Tally)
    paced: list[tuple[float, float]] = field(default_factory=list)  # (asked, sent) req/s
    http_errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s during the saturating run


async def timed_slice(call: Any, seconds: float, into: list[float]) -> None:
    deadline = harness.now() + seconds
    done = 0
    while done < MIN_SAMPLES or harness.now() < deadline:
        start = harness.now()
        await call()
        into.append(harness.now() - start)
        done += 1


async def measure_queries(
    url: str,
    engine: AsyncEngine,
    app: Served | None,
    options: Options,
    bar: Any,
) -> tuple[list[CaseFigures], str | None]:
    base = app.base if app else None
    database = make_url(url).database or ""
    recorder = PostgresSearch(engine)  # its statements are recorded on the engine
    pool = await create_read_pool(url, 2)
    search = PostgresSearch(engine, reader=pool)  # as the served app searches
    # the in-db side under the http side's load, on as many connections as the app reads on
    loaded_pool = await create_read_pool(url, Settings.model_fields["database_pool_size"].default)
    conn = await asyncpg.connect(plain_url(url))
    figures = [CaseFigures(case) for case in CASES]
    recorded: dict[str, Recorded] = {}
    http_note: str | None = None if base else "not measured"
    try:
        for fig in figures:  # record, check, warm up
            rec = await record(engine, recorder, fig.case.query)
            recorded[fig.case.key] = rec
            fig.statements, fig.total = len(rec.statements), rec.result.total
            check_replay(fig.case, rec, await replay(conn, rec.statements))
            if options.show_sql:
                await show_sql(conn, fig.case, rec)
            if base and http_note is None:
                http_note = check_http(base, fig.case, rec)
        slice_s = max(0.1, options.duration / 8)
        half = options.duration / 2
        sides = ["in-db", "search"] + (["http", "in-db@load"] if base and http_note is None else [])
        task = bar.add_task(
            f"{len(CASES)} query classes × {'/'.join(sides)}",
            total=options.rounds * len(CASES) + len(CASES),
        )
        for fig in figures:  # warm-up (plans, statement caches, pools), the saturating rate
            rec = recorded[fig.case.key]
            for _ in range(1):
                await replay(conn, rec.statements)
                await search.search(fig.case.query)
            if "http" in sides:
                assert base is not None
                path = http_path(fig.case.query)
                await saturate(base, path, min(1.0, options.duration / 4), options.connections)
                assert app is not None
                meter = CpuMeter(
                    psutil.Process(app.process.pid), database, shutil.which("wrk") is None
                )
                meter.start()
                done, seconds, errors = await saturate(base, path, half, options.connections)
                fig.cpu = meter.stop()
                fig.saturating.add(done, seconds)
                fig.http_errors += errors
            bar.update(task, advance=1)
        # this process is also the load generator and the in-process sides: what set-up left
        # (the analysis' dictionaries above all) goes beyond the garbage collector, as in the
        # served app, so that no full collection pauses a measured request here
        freeze_startup_objects()
        for round_number in range(options.rounds):
            for fig in figures:
                rec = recorded[fig.case.key]
                query = fig.case.query
                shift = round_number % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    if side == "in-db":
                        statements = rec.statements
                        await timed_slice(
                            lambda s=statements: replay(conn, s), slice_s, fig.samples[side]
                        )
                    elif side == "search":
                        await timed_slice(
                            lambda q=query: search.search(q), slice_s, fig.samples[side]
                        )
                    elif side == "in-db@load":
                        fig.samples[side] += await paced_replay(
                            loaded_pool,
                            rec.statements,
                            max(1.0, fig.saturating.rate / 2),
                            half,
                            options.connections,
                        )
                    else:
                        assert base is not None
                        rate = max(1.0, fig.saturating.rate / 2)
                        latencies, achieved, errors = await paced(
                            base, http_path(query), rate, half, options.connections
                        )
                        fig.samples["http"] += latencies
                        fig.paced.append((rate, achieved))
                        fig.http_errors += errors
                bar.update(task, advance=1)
    finally:
        await conn.close()
        await pool.close()
        await loaded_pool.close()
    return figures, http_note


def measure(url: str, server: harness.Server, options: Options) -> None:
    spec = Spec(listings=options.listings)
    tmp = Path(tempfile.mkdtemp(prefix="agribridge-bench-search-"))
    try:
        env = _environment(tmp) | {"MARKET_DATABASE_URL": plain_url(url)}
        env.pop("MARKET_SEARCH_BACKEND", None)  # the default: PostgreSQL
        port = free_port()
        argv = [*_market_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
        # started first, so that it runs the code the database was just migrated with (the
        # load takes a while); it only polls the empty search outbox meanwhile
        err.print("Starting the app (market serve)", highlight=False)
        with serve("app", argv, env, port, tmp) as app:

            async def prepare() -> Loaded:
                engine = create_engine(url)
                try:
                    with harness.progress() as bar:
                        return await load(url, engine, spec, bar)
                finally:
                    await engine.dispose()

            loaded = asyncio.run(prepare())

            try:
                with osmem() as es_server, harness.progress() as bar:
                    es = asyncio.run(es_load(es_server.url, spec, ES_SECONDS, bar))
            except ImportError:
                es = EsLoaded("skipped: osmem-server is not installed (pip install osmem-server)")

            async def queries() -> tuple[list[CaseFigures], str | None]:
                engine = create_engine(url)
                try:
                    with harness.progress() as bar:
                        return await measure_queries(url, engine, app, options, bar)
                finally:
                    await engine.dispose()

            figures, http_note = asyncio.run(queries())
            app_rss = app.rss()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    version = asyncio.run(harness.server_version(url))
    postgres_rss = server.rss_bytes()
    report(loaded, es, figures, http_note, options, server, version, app_rss, postgres_rss)


# ---------------------------------------------------------------- the report


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.1f}" if value < 0.1 else f"{value * 1000:.0f}"


def _ratio(a: float, b: float) -> str:
    return "-" if math.isnan(a) or math.isnan(b) or not b else f"{a / b:.2f}x"


def _met(ok: bool) -> str:
    return "met" if ok else "[red]MISSED[/]"


def report(
    loaded: Loaded,
    es: EsLoaded,
    figures: list[CaseFigures],
    http_note: str | None,
    options: Options,
    server: harness.Server,
    version: str,
    app_rss: int | None,
    postgres_rss: tuple[int, int] | None,
) -> None:
    wrk = shutil.which("wrk")
    generator = (
        f"wrk (-t1 -c{options.connections})"
        if wrk
        else f"the built-in asyncio HTTP/1.1 client ({options.connections} connections, in "
        "this process; wrk not found on PATH)"
    )
    out.print()
    out.print(
        f"[bold]{TITLE}[/]: {loaded.documents:,} generated listing documents; PostgreSQL "
        f"{version} ({server.describe()}); Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs shared by this process, the app server, PostgreSQL and osmem",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"Data: bench/search_data.py, seed {Spec().seed}, loaded in {loaded.seconds:.0f} s in "
        f"batches of {BATCH:,} (with the COPY baseline and the analysis timing); search_listing "
        f"{harness.mib(loaded.table_bytes)} with indexes (the terms GIN index "
        f"{harness.mib(loaded.terms_index_bytes)}), {loaded.vocabulary:,} vocabulary terms; "
        "VACUUM ANALYZE"
        f"{' and CHECKPOINT' if loaded.checkpointed else ' (no CHECKPOINT: not allowed)'} "
        f"afterwards {loaded.vacuum_seconds:.1f} s. "
        "Peak resident memory of this process while loading "
        f"{harness.mib(loaded.peak_rss)} (sampled every 20 ms; "
        f"{harness.mib(loaded.rss_before)} before; ru_maxrss {harness.mib(max_rss_bytes())})",
        highlight=False,
        soft_wrap=True,
    )

    table = Table(title=f"{TITLE}: indexing", title_justify="left", caption_justify="left")
    for name in ("backend", "documents", "docs/s", "baseline docs/s", "ratio", "spread"):
        table.add_column(name, justify="left" if name == "backend" else "right")
    table.add_row(
        "PostgresSearch.index",
        f"{loaded.index.count:,}",
        f"{loaded.index.rate:,.0f}",
        f"{loaded.copy.rate:,.0f}",
        _ratio(loaded.index.rate, loaded.copy.rate),
        f"±{max(loaded.index.spread, loaded.copy.spread) / 2:.0%}",
    )
    table.add_row(
        "  analysis alone (Python)",
        f"{loaded.analysis.count:,}",
        f"{loaded.analysis.rate:,.0f}",
        "",
        "",
        f"±{loaded.analysis.spread / 2:.0%}",
    )
    if es.status == "ok":
        table.add_row(
            "ElasticsearchSearch.index (osmem)",
            f"{es.documents:,}",
            f"{es.index.rate:,.0f}",
            f"{es.bulk.rate:,.0f}",
            _ratio(es.index.rate, es.bulk.rate),
            f"±{max(es.index.spread, es.bulk.spread) / 2:.0%}",
        )
    else:
        table.add_row("ElasticsearchSearch.index (osmem)", "-", "-", "-", "-", es.status)
    table.caption = (
        "PostgreSQL baseline: asyncpg COPY of the same documents' JSON into a table without "
        "indexes, batch by batch in turn with index() (alternating which goes first): the "
        "floor of moving the same data into PostgreSQL, so ratio = what analysis, tsvector, "
        "GIN and B-tree upkeep, upsert and vocabulary keep of it. The analysis row times "
        "document_terms + the tsvector text alone on every tenth batch (index() itself runs "
        "document_terms twice per document: row and vocabulary). Elasticsearch: "
        f"osmem-server, in-memory OpenSearch-compatible test server, the first "
        f"{es.documents:,} documents"
        + (f" (stopped after {ES_SECONDS:.0f} s)" if es.stopped_early else "")
        + f", {ES_BATCH} per index() call, then one refresh ({es.refresh_seconds:.1f} s), "
        "against a bulk request per batch of the same JSON into an index mapping no field: "
        "osmem figures say nothing about a real cluster. Spread: half the range of the rates "
        "per tenth of the load (per batch for osmem)."
    )
    out.print(table)
    if loaded.failures or es.failures:
        out.print(
            f"[red]Refused documents[/]: PostgreSQL {loaded.failures}, Elasticsearch {es.failures}"
        )

    out.print(
        "Query classes (Query → GET /search/listings parameters; statements search() sends): "
        + "; ".join(
            f"{f.case.name}: {describe_query(f.case.query)} ({f.statements})" for f in figures
        ),
        highlight=False,
        soft_wrap=True,
    )
    table = Table(
        title=f"{TITLE}: queries on PostgreSQL, {loaded.documents:,} listings",
        title_justify="left",
        caption_justify="left",
    )
    for name in (
        "class",
        "hits",
        "in-db ms",
        "search ms",
        "search /in-db",
        "http sat/s",
        "http ms",
        "http /in-db",
        "in-db@load ms",
        "http /in-db@load",
    ):
        table.add_column(name, justify="left" if name == "class" else "right")
    for fig in figures:
        p = {side: (percentile(s, 50), percentile(s, 95)) for side, s in fig.samples.items()}
        has_http = bool(fig.samples["http"])
        http_ratio = _ratio(p["http"][1], p["in-db"][1])
        table.add_row(
            fig.case.name,
            f"{fig.total:,}",
            f"{_ms(p['in-db'][0])} / {_ms(p['in-db'][1])}",
            f"{_ms(p['search'][0])} / {_ms(p['search'][1])}",
            _ratio(p["search"][1], p["in-db"][1]),
            f"{fig.saturating.rate:,.0f}" if has_http else "-",
            f"{_ms(p['http'][0])} / {_ms(p['http'][1])}" if has_http else "-",
            f"{http_ratio} {'ok' if _http_ok(fig) else '[red]no[/]'}" if has_http else "-",
            f"{_ms(p['in-db@load'][0])} / {_ms(p['in-db@load'][1])}" if has_http else "-",
            _ratio(p["http"][1], p["in-db@load"][1]) if has_http else "-",
        )
    samples = {
        side: sum(len(f.samples[side]) for f in figures) for side in ("in-db", "search", "http")
    }
    table.caption = (
        "Latencies p50 / p95 in ms over all rounds' samples "
        f"({samples['in-db']:,} in-db, {samples['search']:,} search, {samples['http']:,} http "
        "in all); ratios of the p95s. hits = the search's total. in-db = the statements "
        "search() sends (recorded: same text and parameters) replayed on one raw asyncpg "
        "connection, with BEGIN and ROLLBACK around a typo lookup's (as the app's read pool "
        "runs them); search = PostgresSearch.search in-process on such a pool; http = GET "
        "/search/listings on `market serve` at half the saturating rate. http sat/s = the "
        "saturating rate, closed loop with "
        f"{options.connections} connections for --duration/2 s per class; http ms = the paced "
        "load at half of it: fixed inter-arrival times over as many keep-alive connections, "
        "from writing the request to the last byte of the answer. ok/no: http p95 ≤ "
        f"{TARGET_HTTP_RATIO:g}× the "
        "in-db p95. in-db@load = the in-db statements under the http side's load: the same "
        "paced arrivals, each replayed on a pool of as many connections as the app's read "
        "pool, latency from the arrival (queueing included); http /in-db@load is then what "
        "the app adds over the database under the same load."
    )
    out.print(table)
    if http_note:
        out.print(f"HTTP side: {http_note}", highlight=False)
    else:
        errors = sum(f.http_errors for f in figures)
        sent = [done / asked for f in figures for asked, done in f.paced if asked]
        out.print(
            f"Load generator for the saturating rate: {generator}; the paced client sent "
            f"{min(sent, default=0):.0%}–{max(sent, default=0):.0%} of the rate asked; "
            f"{errors} errors (non-2xx or socket). Served app resident memory after the run: "
            f"{harness.mib(app_rss) if app_rss else '-'}"
            + (
                f"; embedded PostgreSQL {harness.mib(postgres_rss[0])} over "
                f"{postgres_rss[1]} processes"
                if postgres_rss
                else ""
            ),
            highlight=False,
            soft_wrap=True,
        )

        cpu = []
        for f in figures:
            done = f.saturating.count
            if not done or not f.cpu:
                continue
            pg = f"{f.cpu['postgres'] / done * 1000:.1f}" if "postgres" in f.cpu else "?"
            cpu.append(
                f"{f.case.name} {f.cpu['server'] / done * 1000:.1f} / {pg} / "
                f"{f.cpu['load'] / done * 1000:.1f}"
            )
        out.print(
            "CPU ms per request while saturating (app server process / its PostgreSQL "
            "backends / load generator): " + "; ".join(cpu),
            highlight=False,
            soft_wrap=True,
        )

    by_key = {f.case.key: f for f in figures}
    rare = percentile(by_key["rare"].samples["in-db"], 95)
    facets = percentile(by_key["facets"].samples["in-db"], 95)
    scale = (
        "at the targets' scale"
        if loaded.documents >= TARGET_SCALE
        else f"measured at {loaded.documents:,}, the targets are for {TARGET_SCALE:,}: run "
        f"with --listings {TARGET_SCALE}"
    )
    out.print(
        f"Targets ({scale}): in-db p95 of a rare 2-character word {_ms(rare)} ms ≤ "
        f"{TARGET_RARE_MS:g} ms {_met(rare * 1000 <= TARGET_RARE_MS)}; common word with facets "
        f"{_ms(facets)} ms ≤ {TARGET_FACETS_MS:g} ms {_met(facets * 1000 <= TARGET_FACETS_MS)}; "
        "http "
        f"p95 ≤ {TARGET_HTTP_RATIO:g}× in-db p95 at half the saturating load: "
        + (
            f"{sum(1 for f in figures if _http_ok(f))} of {len(figures)} classes met "
            f"(against the in-db statements under the same load: "
            f"{sum(1 for f in figures if _http_ok(f, 'in-db@load'))} of {len(figures)})"
            if not http_note
            else "not measured"
        ),
        soft_wrap=True,
    )


def _http_ok(fig: CaseFigures, baseline: str = "in-db") -> bool:
    if not fig.samples["http"] or not fig.samples[baseline]:
        return False
    return percentile(fig.samples["http"], 95) <= TARGET_HTTP_RATIO * percentile(
        fig.samples[baseline], 95
    )


def run(options: Options) -> None:
    with harness.postgres_server() as server, harness.fresh_database(server) as url:
        measure(url, server, options)


if __name__ == "__main__":
    sys.exit("run it as: python -m bench search")
