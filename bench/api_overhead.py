"""API read path overhead: the real app (httpx over ASGI) against the same SQL on raw asyncpg.

Two read endpoints, each measured against a baseline that runs exactly the statements the
endpoint sends to PostgreSQL, with the same text and parameters, on one asyncpg connection:

* GET /regions?q=jingyuan       -- one region search query, no sign-in;
* GET /organisations/{id}       -- bearer token lookup, the organisation by id, the caller's
                                   membership role (cycling over --users signed-in owners).

A second baseline, raw+txn, adds what the engine does around those statements on every
request (the pool's pre-ping: BEGIN, an empty query, ROLLBACK; then BEGIN ... COMMIT), so that
the table separates the cost of round trips from the cost of Python. GET /healthz is timed
too, as the floor of httpx + ASGI + FastAPI + middleware without any SQL.

The ratio app/raw is the share of the database's speed that survives the HTTP layer, FastAPI,
the ORM, validation and serialisation. Before timing, one request of each kind is run with the
engine's statements recorded, and the run stops if the baseline no longer matches them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import platform
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench import harness
from bench.harness import Options, Tally, err, out
from market.accounts import service as accounts_service
from market.app import create_app
from market.config import Settings
from market.db import create_engine, create_sessionmaker, plain_url, utcnow
from market.observability import JsonFormatter
from market.organisations import service as organisations_service
from payments.offline import BankAccount, OfflineBankTransfer
from search.postgres import PostgresSearch

TITLE = "API read path overhead"
SEARCH = "jingyuan"
REGION_PATH = f"/regions?q={SEARCH}"
REGION_LIMIT = 20  # the endpoint's default `limit`
PASSWORD = "correct-horse-42"
ORG_REGIONS = ("620421", "620422", "620423", "620402", "620403")  # Baiyin's counties/districts

# ---------------------------------------------------------------- the baseline's SQL
# Copied from what SQLAlchemy sends for market/regions/service.py::search and for
# market/accounts/service.py::resolve_bearer + market/organisations/service.py::access.
# `--show-sql` prints what the app sends; the run refuses to time a baseline that drifted.

REGION_SQL = (
    "SELECT region.code, region.name_zh, region.short_name_zh, region.name_pinyin, "
    "region.name_initials, region.level, region.parent_code, region.longitude, region.latitude, "
    "region.is_poverty_county, region.poverty_flag_updated_at \n"
    "FROM region \n"
    "WHERE (region.name_pinyin LIKE $1::VARCHAR || '%' ESCAPE '/') "
    "OR region.name_initials = $2::VARCHAR "
    "ORDER BY (region.short_name_zh = $3::VARCHAR OR region.name_zh = $4::VARCHAR "
    "OR region.name_pinyin = $5::VARCHAR) DESC, "
    "CASE region.level WHEN $6::VARCHAR THEN $7::INTEGER WHEN $8::VARCHAR THEN $9::INTEGER "
    "WHEN $10::VARCHAR THEN $11::INTEGER END, length(region.name_zh), region.code \n"
    " LIMIT $12::INTEGER"
)
REGION_LEVEL_RANK = ("province", 0, "city", 1, "county", 2)

TOKEN_SQL = (
    "SELECT access_token.user_id, access_token.token_hash, access_token.expires_at, "
    "access_token.revoked_at, access_token.last_used_at, access_token.id, "
    "access_token.created_at \n"
    "FROM access_token \n"
    "WHERE access_token.token_hash = $1::BYTEA"
)
ORGANISATION_SQL = (
    "SELECT organisation.kind, organisation.name_zh, organisation.name_en, "
    "organisation.region_code, organisation.unified_social_credit_code, "
    "organisation.description, organisation.contact_phone, organisation.verification_status, "
    "organisation.rejection_reason, organisation.verified_at, organisation.verified_by_id, "
    "organisation.updated_at, organisation.id, organisation.created_at \n"
    "FROM organisation \n"
    "WHERE organisation.id = $1::UUID"
)
ROLE_SQL = (
    "SELECT membership.role \n"
    "FROM membership \n"
    "WHERE membership.organisation_id = $1::UUID AND membership.user_id = $2::UUID"
)


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    organisation_id: uuid.UUID
    token: str

    @property
    def path(self) -> str:
        return f"/organisations/{self.organisation_id}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# ---------------------------------------------------------------- setup


async def populate(
    maker: async_sessionmaker[AsyncSession], count: int, advance: Callable[[], None]
) -> list[Member]:
    """`count` users, each the owner of a verified organisation, each with a bearer token."""
    members: list[Member] = []
    run = uuid.uuid4().hex[:6]
    async with maker() as session:
        for i in range(count):
            user = await accounts_service.register(
                session,
                email=f"bench-{run}-{i}@example.cn",
                password=PASSWORD,
                display_name=f"压测用户{i}",
            )
            organisation = await organisations_service.create_organisation(
                session,
                creator_id=user.id,
                data={
                    "kind": ("cooperative", "buyer")[i % 2],
                    "name_zh": f"压测机构{i:04d}",
                    "region_code": ORG_REGIONS[i % len(ORG_REGIONS)],
                },
            )
            await organisations_service.verify(
                session, organisation_id=organisation.id, operator_id=user.id
            )
            token, _ = await accounts_service.issue_token(
                session, user=user, ttl=dt.timedelta(days=1)
            )
            members.append(Member(user.id, organisation.id, token))
            if i % 50 == 49:
                await session.commit()
            advance()
        await session.commit()
    return members


# ---------------------------------------------------------------- the sides


class AppSide:
    """The real app: create_app on a real engine, driven by httpx over ASGI (no sockets)."""

    def __init__(self, url: str) -> None:
        self.settings = Settings(_env_file=None, database_url=None, log_json=True)  # type: ignore[call-arg]
        self.engine: AsyncEngine = create_engine(url, pool_size=self.settings.database_pool_size)
        self.maker = create_sessionmaker(self.engine)
        app = create_app(self.settings, sessionmaker=self.maker)
        # what the lifespan would build (httpx's ASGITransport does not run the lifespan),
        # set as tests/conftest.py's build_app does
        app.state.search = PostgresSearch(self.engine)
        app.state.payments = OfflineBankTransfer(
            BankAccount(
                self.settings.bank_account_name,
                self.settings.bank_account_number,
                self.settings.bank_name,
            )
        )
        self.app = app
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench.invalid"
        )

    async def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        response = await self.client.get(path, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response

    async def close(self) -> None:
        await self.client.aclose()
        await self.app.state.search.close()
        await self.app.state.payments.close()
        await self.engine.dispose()


class RawSide:
    """The baseline: the same statements on one asyncpg connection, no ORM, no HTTP.

    With `app_round_trips` it also does what the engine does around them on every request:
    the pool's pre-ping (BEGIN; an empty query; ROLLBACK, when the engine has pool_pre_ping)
    and the session's own transaction (BEGIN ... COMMIT). The gap between the two raw figures
    is the cost of those round trips; the gap to the app is Python.
    """

    def __init__(self, conn: asyncpg.Connection, *, app_round_trips: bool, pre_ping: bool) -> None:
        self.conn = conn
        self.app_round_trips = app_round_trips
        self.pre_ping = pre_ping

    async def _run(self, work: Callable[[], Awaitable[Any]]) -> Any:
        if not self.app_round_trips:
            return await work()
        if self.pre_ping:
            ping = self.conn.transaction()
            await ping.start()
            await self.conn.fetchrow(";")
            await ping.rollback()
        async with self.conn.transaction():
            return await work()

    def round_trips(self, statements: int) -> int:
        return statements + (2 + (3 if self.pre_ping else 0) if self.app_round_trips else 0)

    async def regions(self) -> list[asyncpg.Record]:
        async def work() -> list[asyncpg.Record]:
            return await self.conn.fetch(
                REGION_SQL, SEARCH, SEARCH, SEARCH, SEARCH, SEARCH, *REGION_LEVEL_RANK, REGION_LIMIT
            )

        rows: list[asyncpg.Record] = await self._run(work)
        return rows

    async def organisation(self, member: Member) -> asyncpg.Record:
        async def work() -> asyncpg.Record:
            digest = hashlib.sha256(member.token.encode()).digest()
            token = await self.conn.fetchrow(TOKEN_SQL, digest)
            if token is None or token["revoked_at"] is not None or token["expires_at"] <= utcnow():
                raise SystemExit("raw baseline: the bearer token is not valid")
            organisation = await self.conn.fetchrow(ORGANISATION_SQL, member.organisation_id)
            if organisation is None:
                raise SystemExit("raw baseline: no such organisation")
            role = await self.conn.fetchval(ROLE_SQL, member.organisation_id, token["user_id"])
            if role is None:
                raise SystemExit("raw baseline: the caller is not a member")
            return organisation

        return await self._run(work)


# ---------------------------------------------------------------- checks before timing


def _normalised(sql: str) -> str:
    return " ".join(sql.split())


async def _recorded(
    engine: AsyncEngine, call: Callable[[], Awaitable[httpx.Response]]
) -> tuple[httpx.Response, list[str]]:
    """Run one request and return the statements the engine sent for it."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])  # (conn, cursor, statement, parameters, context, many)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        response = await call()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    return response, statements


async def check_baseline(app: AppSide, raw: RawSide, member: Member, show_sql: bool) -> None:
    """The baseline must send what the endpoint sends and get the same answer."""
    cases = [
        (
            REGION_PATH,
            lambda: app.get(REGION_PATH),
            [REGION_SQL],
        ),
        (
            "/organisations/{id}",
            lambda: app.get(member.path, member.headers),
            [TOKEN_SQL, ORGANISATION_SQL, ROLE_SQL],
        ),
    ]
    for name, call, expected in cases:
        response, statements = await _recorded(app.engine, call)
        if show_sql:
            err.rule(f"SQL of GET {name}")
            for sql in statements:
                err.print(sql, highlight=False, markup=False)
        if [_normalised(s) for s in statements] != [_normalised(s) for s in expected]:
            err.print(f"[red]The app's SQL for GET {name} differs from the baseline's:[/]")
            for sql in statements:
                err.print("  app: " + _normalised(sql), highlight=False, markup=False)
            for sql in expected:
                err.print("  raw: " + _normalised(sql), highlight=False, markup=False)
            raise SystemExit(
                "bench/api_overhead.py no longer reproduces the endpoint's SQL: update its "
                "baseline statements (see --show-sql)"
            )
        body = response.json()
        if name == REGION_PATH:
            rows = await raw.regions()
            same = [r["code"] for r in rows] == [r["code"] for r in body] and rows
        else:
            org = await raw.organisation(member)
            same = str(org["id"]) == body["id"]
        if not same:
            raise SystemExit(f"the raw baseline of GET {name} returns another answer than the app")


# ---------------------------------------------------------------- timing


async def _timed(
    call: Callable[[int], Awaitable[object]],
    count: int,
    offset: int,
    advance: Callable[[int], None],
) -> float:
    """Run call(offset..offset+count-1) sequentially; progress updates are not timed."""
    step = max(1, count // 50)
    spent = 0.0
    done = 0
    while done < count:
        n = min(step, count - done)
        start = harness.now()
        for i in range(offset + done, offset + done + n):
            await call(i)
        spent += harness.now() - start
        done += n
        advance(n)
    return spent


Call = Callable[[int], Awaitable[object]]
SIDES = ("app", "raw", "raw+txn")


@dataclass
class Case:
    name: str
    calls: dict[str, Call]  # side -> call(i); the app side always, raw sides when comparable


def _access_log_to_devnull() -> Callable[[], None]:
    """Log as `market serve` does (JSON lines, INFO: one access-log line per request), into
    os.devnull, so that formatting each line is paid for but the screen stays readable."""
    from market.observability import configure_logging

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO", json_logs=True)
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed by the returned function
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    assert any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)

    def restore() -> None:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        sink.close()

    return restore


async def measure(url: str, server: harness.Server, options: Options) -> None:
    app = AppSide(url)
    pre_ping = bool(getattr(app.engine.pool, "_pre_ping", False))
    conn = await asyncpg.connect(plain_url(url))
    raw = RawSide(conn, app_round_trips=False, pre_ping=pre_ping)
    raw_txn = RawSide(conn, app_round_trips=True, pre_ping=pre_ping)
    restore_logging = _access_log_to_devnull()
    try:
        with harness.progress() as bar:
            task = bar.add_task("Creating users and organisations", total=options.users)
            members = await populate(app.maker, options.users, lambda: bar.update(task, advance=1))
            paths = [m.path for m in members]
            headers = [m.headers for m in members]

            async def app_organisation(i: int) -> object:
                j = i % len(members)
                return await app.get(paths[j], headers[j])

            cases = [
                Case(
                    "GET /regions?q=jingyuan",
                    {
                        "app": lambda i: app.get(REGION_PATH),
                        "raw": lambda i: raw.regions(),
                        "raw+txn": lambda i: raw_txn.regions(),
                    },
                ),
                Case(
                    "GET /organisations/{id}",
                    {
                        "app": app_organisation,
                        "raw": lambda i: raw.organisation(members[i % len(members)]),
                        "raw+txn": lambda i: raw_txn.organisation(members[i % len(members)]),
                    },
                ),
                Case("GET /healthz (no SQL)", {"app": lambda i: app.get("/healthz")}),
            ]

            # warm-up: every token is used once (its first use writes last_used_at, later uses
            # within 5 minutes only read); statement caches and the pool fill up
            total = sum(len(c.calls) for c in cases) * len(members)
            warm = bar.add_task("Warming up", total=total)
            for case in cases:
                for call in case.calls.values():
                    await _timed(call, len(members), 0, lambda n: bar.update(warm, advance=n))
            await check_baseline(app, raw, members[0], options.show_sql)

            rss_app = harness.process_rss_bytes()
            rss_pg = server.rss_bytes()

            rows: list[harness.Row] = []
            for case in cases:
                tallies = {side: Tally() for side in case.calls}
                tasks = {
                    side: bar.add_task(f"{case.name}: {side}", total=options.requests)
                    for side in case.calls
                }
                order = list(case.calls)
                offset = 0
                for chunk in harness.split(options.requests, options.rounds):
                    # interleave the sides, rotating who goes first, so that a noisy
                    # neighbour slows all of them alike
                    for side in order:
                        spent = await _timed(
                            case.calls[side],
                            chunk,
                            offset,
                            lambda n, t=tasks[side]: bar.update(t, advance=n),  # type: ignore[misc]
                        )
                        tallies[side].add(chunk, spent)
                    order = order[1:] + order[:1]
                    offset += chunk
                rows.append(
                    harness.Row(case.name, tallies["app"], [tallies.get(s) for s in SIDES[1:]])
                )
    finally:
        restore_logging()
        await conn.close()
        await app.close()

    version = await harness.server_version(url)
    report(rows, options, server, version, rss_app, rss_pg, raw, raw_txn)


def report(
    rows: list[harness.Row],
    options: Options,
    server: harness.Server,
    version: str,
    rss_app: int,
    rss_pg: tuple[int, int] | None,
    raw: RawSide,
    raw_txn: RawSide,
) -> None:
    out.print()
    out.print(
        f"[bold]{TITLE}[/]: {options.requests} sequential requests per case and side, "
        f"{options.rounds} interleaved rounds, {options.users} signed-in users; "
        f"PostgreSQL {version} ({server.describe()}); Python {platform.python_version()}",
        highlight=False,
        soft_wrap=True,
    )
    pg = (
        f"{harness.mib(rss_pg[0])} over {rss_pg[1]} processes (shared memory counted per process)"
        if rss_pg
        else "not measured (external server)"
    )
    out.print(
        f"Resident memory after setup: app process {harness.mib(rss_app)} (the ASGI app runs "
        f"in this process, with the benchmark harness); PostgreSQL {pg}",
        highlight=False,
        soft_wrap=True,
    )
    statements = {"GET /regions?q=jingyuan": 1, "GET /organisations/{id}": 3}
    table = harness.ratio_table(TITLE, "app", list(SIDES[1:]), rows)
    table.caption = (
        "raw = the endpoint's SQL on one asyncpg connection; raw+txn = the same plus the "
        "engine's pool pre-ping and transaction round trips. Spread = half the range of the "
        "per-round rates."
    )
    out.print(table)
    for row in rows:
        base, with_txn = row.baselines
        if base is None or with_txn is None:
            continue
        n = statements.get(row.case, 0)
        out.print(
            f"{row.case}: {row.measured.rate:,.0f} req/s vs raw asyncpg {base.rate:,.0f}/s "
            f"→ {row.measured.rate / base.rate:.2f}x  "
            f"({_trips(raw.round_trips(n))}; with the app's {_trips(raw_txn.round_trips(n))} "
            f"{with_txn.rate:,.0f}/s → {row.measured.rate / with_txn.rate:.2f}x)",
            highlight=False,
            soft_wrap=True,
        )


def _trips(n: int) -> str:
    return f"{n} round trip{'' if n == 1 else 's'}"


def run(options: Options) -> None:
    with harness.postgres_server() as server, harness.fresh_database(server) as url:
        asyncio.run(measure(url, server, options))
