"""Trading under contention: order placement on one hot listing against the same orders spread
over many listings, and auction clearing with its results written to the database.

Orders (through the real app: `market.app.create_app` on a real engine, driven by httpx over
ASGI in this process, every request committing, access log formatted as `market serve` does
into os.devnull). --buyers verified buyer organisations (default 50), each with a signed-in
user's bearer token, place one-line orders of one unit all at once
(`POST /organisations/{id}/orders`, a fresh Idempotency-Key each):

* hot    -- every buyer orders the same fixed-price listing;
* spread -- buyer i orders listing i of --buyers listings (of 10 cooperatives), one each.

One warm-up wave (spread), then --rounds rounds of one wave per side, rotating which side
goes first. After every round the listings are checked: nothing oversold (available >= 0, reserved =
units ordered, order lines = orders) and the stock ledger holds exactly one `reserve` movement
per order. Printed: orders per second of each side, the ratio hot/spread (target >= 0.30x) and
the latency of one order. Then a race: --buyers buyers at once for a listing of 10 units (10
must succeed, the others get 409 insufficient_stock).

Auction clearing (`market.trading.service.clear_auction` on one session, commit included): an
auction listing of as many units as 60% of the demand, sealed bids of 1 to 5 units from
distinct buyers (inserted directly into `bid`; prices 45 to 90 yuan against a reserve of 50,
no partial fills), closed by moving `auction_closes_at` into the past; each size in --bids
(default 1,000, 5,000 and 20,000) is cleared once per round (--rounds, on an auction of its own
with the same bids; one clearing is one sample of a noisy machine), and the medians are
reported with the range, after one unreported clearing of 100 bids (as in a
running worker: statements prepared, caches warm), itself after an ANALYZE (as autovacuum keeps
a running database's statistics: with those of the empty tables, PostgreSQL plans the foreign-key
checks of new orders as scans of the whole table, and a clearing takes time quadratic in its
winners).
Every winner gets an order through the orders service (`place_agreed_orders`: the orders of all
winners in a few set-based statements and COPYs). The baseline is
`market.trading.clearing.clear()` of the same bids in memory. Printed: allocations (winning bids)
per second of both, their ratio and the target of 5,000/s; the clearing's totals must equal
clear()'s and the listing must hold exactly the allocated units reserved, one `reserve` movement
and one order per winner. The first clearing of the smallest size also records every statement
(SQLAlchemy `before_cursor_execute`/`after_cursor_execute`, and asyncpg's COPY, a few
microseconds each): how many, the share of the time spent waiting for PostgreSQL and the
slowest kinds of statement. Before each clearing the heap is collected (not the garbage of the
in-memory baseline); the app, like the server and `market worker` once started, has frozen its
start-up objects out of the garbage collector's reach (`freeze_startup_objects`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import os
import platform
import random
import re
import statistics
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from rich.table import Table
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench import harness
from bench.harness import Options, Tally, err, out
from market.accounts import security
from market.accounts.models import User
from market.app import create_app, freeze_startup_objects
from market.catalog import service as catalog_service
from market.config import Settings
from market.db import create_engine, create_sessionmaker, plain_url
from market.orders.service import Terms
from market.trading import clearing
from market.trading import service as trading_service
from market.trading.models import Bid
from payments.offline import BankAccount, OfflineBankTransfer
from search.postgres import PostgresSearch
from tests.factories import make_org, token_for
from tests.factories_listings import (
    WOLFBERRY_BOX,
    Supply,
    make_listing,
    open_lot,
    purchase,
    registered_household,
)

TITLE = "Trading under contention"
TARGET_HOT_RATIO = 0.3
TARGET_ALLOCATIONS = 5_000  # allocations per second, clearing with results written
WARM_UP_BIDS = 100  # an auction cleared before the measured ones (statements prepared, caches warm)
TERMS = Terms(fee_bps=300, payment_minutes=30, freshness_margin_days=2)
WAVES = 1  # waves of orders per side and round (each: every buyer orders once)
COOPERATIVES = 10  # the spread listings are theirs, round robin; the first also has the hot one
RACE_UNITS = 10
PASSWORD = "correct-horse-42"
BULK_WOLFBERRY = {"name_zh": "靖远枸杞 散装", "unit": "kg", "box_net_weight_g": None}
LOT_KG = 10_000  # each cooperative's lot, at least: 60% from a poor household, 40% another
RESERVE_FEN = 5000
OFFERED_SHARE = 0.6  # of the auction's demand
ADDRESS = {
    "destination_code": "110105",
    "address": "北京市朝阳区新发地 B 区 12 号",
    "contact_name": "王建国",
    "contact_phone": "13800138000",
}


@dataclass(frozen=True)
class Buyer:
    organisation_id: uuid.UUID
    token: str

    @property
    def path(self) -> str:
        return f"/organisations/{self.organisation_id}/orders"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Idempotency-Key": uuid.uuid4().hex}


# ---------------------------------------------------------------- setup


class Users:
    """Users as accounts_service.register leaves them, with one argon2 hash computed once and
    shared (it costs most of a second on a busy 2-core machine; nobody signs in with it)."""

    def __init__(self) -> None:
        self.password_hash = security.hash_password(PASSWORD)
        self.run = uuid.uuid4().hex[:6]
        self.count = 0

    async def make(self, session: AsyncSession, name: str) -> User:
        self.count += 1
        user = User(
            email=f"bench-{self.run}-{self.count}@example.cn",
            display_name=name,
            password_hash=self.password_hash,
        )
        session.add(user)
        await session.flush()
        return user


async def token(session: AsyncSession, user: User) -> str:
    return await token_for(session, user, ttl=dt.timedelta(days=1))


async def make_supply(session: AsyncSession, users: Users, i: int, *, kg: int = LOT_KG) -> Supply:
    """tests/factories_listings.make_supply with a lot of `kg` of bulk wolfberry sold by the
    kg, its owner made by `users` (no password hashing)."""
    owner = await users.make(session, f"合作社负责人{i}")
    cooperative = await make_org(
        session, owner=owner, kind="cooperative", region_code="620421", name_zh=f"压测合作社{i:02d}"
    )
    product = await catalog_service.create_product(
        session, cooperative_id=cooperative.id, data={**WOLFBERRY_BOX, **BULK_WOLFBERRY}
    )
    poor = await registered_household(session, cooperative, poor_since=dt.date(2019, 1, 1))
    other = await registered_household(session, cooperative, poor_since=None, name="李秀英")
    lot = await open_lot(session, cooperative, product)
    poor_grams = kg * 1000 * 6 // 10
    await purchase(session, lot, poor, grams=poor_grams, price_per_kg=4000)
    await purchase(session, lot, other, grams=kg * 1000 - poor_grams, price_per_kg=4000)
    return Supply(owner, cooperative, await token(session, owner), product, lot, poor, other)


async def fixed_listing(session: AsyncSession, supply: Supply, quantity: int) -> uuid.UUID:
    listing = await make_listing(
        session,
        supply,
        quantity=quantity,
        min_order_quantity=1,
        price_tiers=[],
        unit_price_fen=6000,
    )
    return listing.id


async def make_buyers(session: AsyncSession, users: Users, count: int) -> list[Buyer]:
    buyers = []
    for i in range(count):
        user = await users.make(session, f"采购员{i}")
        organisation = await make_org(
            session, owner=user, kind="buyer", region_code="110105", name_zh=f"压测采购商{i:03d}"
        )
        buyers.append(Buyer(organisation.id, await token(session, user)))
    return buyers


async def auction_buyers(session: AsyncSession, users: Users, count: int) -> list[uuid.UUID]:
    """`count` verified buyer organisations written directly, all owned by one user (so that
    every outcome notification renders one e-mail, as for a real buyer)."""
    owner = await users.make(session, "竞拍采购员")
    ids = list(
        (
            await session.execute(
                text(
                    "INSERT INTO organisation (kind, name_zh, region_code, verification_status, "
                    "verified_at, verified_by_id) "
                    "SELECT 'buyer', '压测竞拍买家' || lpad(g::text, 5, '0'), '110105', "
                    "'verified', now(), :owner FROM generate_series(1, :n) AS g RETURNING id"
                ),
                {"n": count, "owner": owner.id},
            )
        ).scalars()
    )
    await session.execute(
        text(
            "INSERT INTO membership (organisation_id, user_id, role) "
            "SELECT o, :owner, 'owner' FROM unnest(CAST(:ids AS uuid[])) AS o"
        ),
        {"ids": ids, "owner": owner.id},
    )
    return ids


@dataclass
class Auction:
    listing_id: uuid.UUID
    bids: int
    offered: int


async def make_auction(
    maker: async_sessionmaker[AsyncSession],
    supply: Supply,
    buyer_ids: list[uuid.UUID],
    count: int,
) -> Auction:
    """An auction of 60% of the demand of `count` sealed bids from distinct buyers, closed."""
    rng = random.Random(count)
    terms = [(rng.randint(45, 90) * 100, rng.randint(1, 5)) for _ in range(count)]
    offered = max(1, round(OFFERED_SHARE * sum(q for _, q in terms)))
    async with maker() as session, session.begin():
        listing = await make_listing(
            session,
            supply,
            sale_mode="auction",
            price_tiers=[],
            quantity=offered,
            min_order_quantity=1,
            unit_price_fen=RESERVE_FEN,
            reserve_price_fen=RESERVE_FEN,
            auction_closes_at=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat(),
        )
        await session.execute(
            insert(Bid),
            [
                {
                    "kind": "auction",
                    "listing_id": listing.id,
                    "cooperative_id": supply.cooperative.id,
                    "buyer_id": buyer_id,
                    "placed_by_id": None,
                    "status": "open",
                    "unit_price_fen": price,
                    "quantity": quantity,
                    "partial_ok": False,
                    **ADDRESS,
                }
                for buyer_id, (price, quantity) in zip(buyer_ids, terms, strict=False)
            ],
        )
        await session.execute(
            text(
                "UPDATE listing SET auction_closes_at = now() - interval '1 second' WHERE id = :id"
            ),
            {"id": listing.id},
        )
    return Auction(listing.id, count, offered)


@dataclass
class Setup:
    buyers: list[Buyer]
    hot: uuid.UUID
    spread: list[uuid.UUID]
    race: uuid.UUID
    auctions: list[Auction]  # --rounds per --bids size, in rounds: every size once per round
    warm_up: Auction  # cleared first and not reported, as a running worker has cleared others


async def populate(maker: async_sessionmaker[AsyncSession], options: Options, bar: Any) -> Setup:
    users = Users()
    # one clearing is one sample of a noisy machine: each size is cleared once per round
    sizes = [WARM_UP_BIDS, *(options.bids * options.rounds)]
    steps = COOPERATIVES + len(sizes) + 2
    per_spread = 2 * (1 + options.rounds * WAVES)  # one unit per wave, with room to spare
    per_hot = 2 * options.buyers * (1 + options.rounds * WAVES)
    task = bar.add_task("Cooperatives, listings, buyers, auctions", total=steps)
    # the first cooperative's lot also holds the hot and the race listing
    first = per_hot + RACE_UNITS + per_spread * -(-options.buyers // COOPERATIVES)
    async with maker() as session, session.begin():
        supplies = []
        for i in range(COOPERATIVES):
            kg = max(LOT_KG, first) if i == 0 else LOT_KG
            supplies.append(await make_supply(session, users, i, kg=kg))
            bar.update(task, advance=1)
        hot = await fixed_listing(session, supplies[0], per_hot)
        race = await fixed_listing(session, supplies[0], RACE_UNITS)
        spread = [
            await fixed_listing(session, supplies[i % COOPERATIVES], per_spread)
            for i in range(options.buyers)
        ]
        buyers = await make_buyers(session, users, options.buyers)
        bar.update(task, advance=1)
        bidders = await auction_buyers(session, users, max(sizes))
        # a cooperative per auction, its lot large enough: at most 3 units per bid are offered
        auction_supplies = [
            await make_supply(session, users, COOPERATIVES + i, kg=max(LOT_KG, 3 * size))
            for i, size in enumerate(sizes)
        ]
        bar.update(task, advance=1)
    auctions = []
    for supply, size in zip(auction_supplies, sizes, strict=True):
        auctions.append(await make_auction(maker, supply, bidders, size))
        bar.update(task, advance=1)
    async with maker() as session:
        # statistics as a running database has them (autovacuum would analyse these tables
        # in a minute or so): tens of thousands of organisations and bids were just written
        await session.execute(text("ANALYZE"))
        await session.commit()
    return Setup(buyers, hot, spread, race, auctions[1:], auctions[0])


# ---------------------------------------------------------------- the app


def _access_log_to_devnull() -> Callable[[], None]:
    """Log as `market serve` does (JSON lines, INFO: one access-log line per request), into
    os.devnull, as bench/api_overhead.py does: each line is formatted and paid for."""
    from market.observability import configure_logging

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO", json_logs=True)
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed by the returned function
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)

    def restore() -> None:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        sink.close()

    return restore


class App:
    """create_app on a real engine, driven by httpx over ASGI; every request commits."""

    def __init__(self, url: str) -> None:
        self.settings = Settings(_env_file=None, database_url=None, log_json=True, worker=False)
        self.engine: AsyncEngine = create_engine(url, pool_size=self.settings.database_pool_size)
        self.maker = create_sessionmaker(self.engine)
        app = create_app(self.settings, sessionmaker=self.maker)
        # what the lifespan would build (ASGITransport does not run it), as tests/conftest.py
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
            transport=httpx.ASGITransport(app=app), base_url="http://bench.invalid", timeout=120
        )
        freeze_startup_objects()  # as the lifespan and `market worker` do once started

    async def order(self, buyer: Buyer, listing_id: uuid.UUID) -> tuple[int, str | None, float]:
        """(status, error code, seconds) of one order of one unit."""
        start = harness.now()
        response = await self.client.post(
            buyer.path,
            headers=buyer.headers(),
            json={"lines": [{"listing_id": str(listing_id), "quantity": 1}], **ADDRESS},
        )
        seconds = harness.now() - start
        code = None
        if response.status_code != 201:
            try:
                code = response.json().get("code")
            except ValueError:
                code = response.text[:200]
        return response.status_code, code, seconds

    async def close(self) -> None:
        await self.client.aclose()
        await self.app.state.search.close()
        await self.app.state.payments.close()
        await self.engine.dispose()


@dataclass
class Wave:
    seconds: float
    statuses: Counter[tuple[int, str | None]]
    latencies: list[float]


async def wave(app: App, buyers: list[Buyer], listings: list[uuid.UUID]) -> Wave:
    """Every buyer orders its listing at once."""
    start = harness.now()
    results = await asyncio.gather(
        *[app.order(b, listing) for b, listing in zip(buyers, listings, strict=True)]
    )
    seconds = harness.now() - start
    return Wave(seconds, Counter((s, c) for s, c, _ in results), [t for _, _, t in results])


# ---------------------------------------------------------------- checks


LEDGER_SQL = """
SELECT l.id, l.quantity_available, l.quantity_reserved, l.quantity_sold, l.quantity_listed,
       (SELECT count(*) FROM stock_movement m
         WHERE m.listing_id = l.id AND m.kind = 'reserve') AS reserves,
       (SELECT coalesce(-sum(m.quantity), 0) FROM stock_movement m
         WHERE m.listing_id = l.id AND m.kind = 'reserve') AS reserved_moved,
       (SELECT count(DISTINCT m.reference) FROM stock_movement m
         WHERE m.listing_id = l.id AND m.kind = 'reserve') AS references,
       (SELECT count(*) FROM order_line o WHERE o.listing_id = l.id) AS lines,
       (SELECT coalesce(sum(o.quantity), 0) FROM order_line o WHERE o.listing_id = l.id) AS units
  FROM listing l
 WHERE l.id = ANY($1::uuid[])
"""


async def oversold(conn: asyncpg.Connection, expected: dict[uuid.UUID, int]) -> list[str]:
    """What is wrong with the listings that should hold `expected` units reserved, each by
    one-unit orders: [] when nothing is oversold and the ledger balances."""
    problems = []
    rows = await conn.fetch(LEDGER_SQL, list(expected))
    for row in rows:
        want = expected[row["id"]]
        facts = (
            row["quantity_reserved"],
            row["reserves"],
            row["reserved_moved"],
            row["references"],
            row["lines"],
            row["units"],
        )
        if row["quantity_available"] < 0 or facts != (want,) * 6:
            problems.append(
                f"listing {row['id']}: available {row['quantity_available']}, reserved "
                f"{row['quantity_reserved']}, reserve movements {row['reserves']} (units "
                f"{row['reserved_moved']}, orders {row['references']}), order lines "
                f"{row['lines']} ({row['units']} units); expected {want} orders of one unit"
            )
        if row["quantity_listed"] != (
            row["quantity_available"] + row["quantity_reserved"] + row["quantity_sold"]
        ):
            problems.append(f"listing {row['id']}: listed ≠ available + reserved + sold")
    if len(rows) != len(expected):
        problems.append(f"{len(expected) - len(rows)} listings missing")
    return problems


# ---------------------------------------------------------------- statements


@dataclass
class Recorded:
    statements: list[str] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # when each statement was sent
    waited: list[float] = field(default_factory=list)  # seconds until each one's answer
    db_seconds: float = 0.0
    committed: float | None = None  # when the (last) COMMIT was sent

    def lock_held(self) -> tuple[float, int] | None:
        """From the first stock movement (the listing's row lock) to COMMIT: seconds, and
        statements sent in between. None without a stock movement or a commit."""
        moves = [i for i, sql in enumerate(self.statements) if kind_of(sql).startswith("stock")]
        if not moves or self.committed is None:
            return None
        return self.committed - self.started[moves[0]], len(self.statements) - moves[0] - 1


@contextmanager
def recording(engine: AsyncEngine) -> Iterator[Recorded]:
    """Every statement the engine sends, and the time spent waiting for each one."""
    recorded = Recorded()

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = harness.now()
        conn.info.setdefault("bench_started", []).append(started)
        recorded.statements.append(statement)
        recorded.started.append(started)

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        waited = harness.now() - conn.info["bench_started"].pop()
        recorded.waited.append(waited)
        recorded.db_seconds += waited

    def commit(conn: Any) -> None:
        recorded.committed = harness.now()

    # COPY (market.db.copy_rows) goes to asyncpg past SQLAlchemy's events: timed here
    copy = asyncpg.Connection.copy_records_to_table

    async def timed_copy(self: asyncpg.Connection, table_name: str, **kwargs: Any) -> str:
        started = harness.now()
        recorded.statements.append(f"COPY {table_name}")
        recorded.started.append(started)
        try:
            return await copy(self, table_name, **kwargs)
        finally:
            recorded.waited.append(harness.now() - started)
            recorded.db_seconds += recorded.waited[-1]

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", before)
    event.listen(sync, "after_cursor_execute", after)
    event.listen(sync, "commit", commit)
    asyncpg.Connection.copy_records_to_table = timed_copy  # type: ignore[method-assign]
    try:
        yield recorded
    finally:
        asyncpg.Connection.copy_records_to_table = copy  # type: ignore[method-assign]
        event.remove(sync, "before_cursor_execute", before)
        event.remove(sync, "after_cursor_execute", after)
        event.remove(sync, "commit", commit)


def kind_of(sql: str) -> str:
    """A statement's kind: verb and main table."""
    s = " ".join(sql.split())
    if s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
        return "SAVEPOINT/RELEASE"
    if s.startswith("WITH moved AS"):
        return "stock move (UPDATE listing + INSERT stock_movement)"
    m = re.match(r'(INSERT INTO|UPDATE|DELETE FROM|COPY) "?(\w+)', s)
    if m:
        return f"{m.group(1).split()[0]} {m.group(2)}"
    m = re.search(r'\bFROM "?(\w+)', s)
    verb = s.split(" ", 1)[0].upper()
    return f"{verb} {m.group(1)}" if m else verb


# ---------------------------------------------------------------- orders


@dataclass
class OrderFigures:
    tallies: dict[str, Tally]
    latencies: dict[str, list[float]]
    checks: int
    recorded: Recorded
    race: Wave
    race_state: list[str]


async def measure_orders(
    app: App, setup: Setup, conn: asyncpg.Connection, options: Options, bar: Any
) -> OrderFigures:
    buyers = setup.buyers
    targets = {"hot": [setup.hot] * len(buyers), "spread": setup.spread}
    expected: dict[uuid.UUID, int] = {setup.hot: 0, **dict.fromkeys(setup.spread, 0)}
    tallies = {side: Tally() for side in targets}
    latencies: dict[str, list[float]] = {side: [] for side in targets}
    tasks = {
        side: bar.add_task(
            f"{len(buyers)} buyers at once: {side}", total=options.rounds + (side == "spread")
        )
        for side in targets
    }

    async def run_wave(side: str) -> Wave:
        done = await wave(app, buyers, targets[side])
        if done.statuses != Counter({(201, None): len(buyers)}):
            raise SystemExit(f"{side}: expected {len(buyers)} × 201, got {dict(done.statuses)}")
        for listing in targets[side]:
            expected[listing] += 1
        return done

    # warm-up, one wave: each token's first use writes last_used_at, the pool and caches fill
    # up; then one more order, recorded, for the statement count (and --show-sql)
    await run_wave("spread")
    bar.update(tasks["spread"], advance=1)
    with recording(app.engine) as recorded:
        status, code, _ = await app.order(buyers[0], setup.spread[0])
    if status != 201:
        raise SystemExit(f"the recorded order answered {status} {code}")
    expected[setup.spread[0]] += 1
    if options.show_sql:
        err.rule("SQL of one POST /organisations/{id}/orders")
        for sql in recorded.statements:
            err.print(sql, highlight=False, markup=False)
    checks = 0
    order = list(targets)
    for _ in range(options.rounds):
        for side in order:
            for _ in range(WAVES):
                done = await run_wave(side)
                tallies[side].add(len(buyers), done.seconds)
                latencies[side] += done.latencies
            bar.update(tasks[side], advance=1)
        order = order[1:] + order[:1]
        problems = await oversold(conn, expected)
        if problems:
            raise SystemExit("OVERSOLD or unbalanced:\n" + "\n".join(problems))
        checks += 1

    race = await wave(app, buyers, [setup.race] * len(buyers))
    winners = race.statuses[(201, None)]
    race_state = await oversold(conn, {setup.race: winners})
    available = await conn.fetchval(
        "SELECT quantity_available FROM listing WHERE id = $1", setup.race
    )
    if available != RACE_UNITS - winners:
        race_state.append(f"available {available} after {winners} orders of {RACE_UNITS}")
    return OrderFigures(tallies, latencies, checks, recorded, race, race_state)


# ---------------------------------------------------------------- auction clearing


@dataclass
class Clearing:
    bids: int
    offered: int
    winners: int
    allocated: int
    seconds: float
    memory_rate: float  # allocations per second of clear() in memory
    problems: list[str]
    recorded: Recorded | None = None


async def sealed_bids(session: AsyncSession, listing_id: uuid.UUID) -> list[clearing.SealedBid]:
    """The bids as clear_auction hands them to clear(): open, in placing order."""
    rows = await session.execute(
        text(
            "SELECT id, unit_price_fen, quantity, partial_ok, seq FROM bid "
            "WHERE listing_id = :id AND kind = 'auction' AND status = 'open' ORDER BY seq"
        ),
        {"id": listing_id},
    )
    return [clearing.SealedBid(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def time_in_memory(bids: list[clearing.SealedBid], offered: int) -> tuple[float, int, int]:
    """(seconds per clear(), winners, units allocated), clear() repeated for >= 0.25 s."""
    outcomes = clearing.clear(bids, quantity=offered, reserve_price_fen=RESERVE_FEN)
    summary = clearing.summarise(outcomes, quantity=offered)  # refuses an over-allocation
    calls, start = 0, harness.now()
    while True:
        clearing.clear(bids, quantity=offered, reserve_price_fen=RESERVE_FEN)
        calls += 1
        spent = harness.now() - start
        if spent >= 0.25 and calls >= 3:
            return spent / calls, summary.winners, summary.allocated


async def clear_one(
    app: App, conn: asyncpg.Connection, auction: Auction, *, record: bool
) -> Clearing:
    async with app.maker() as session:
        bids = await sealed_bids(session, auction.listing_id)
        await session.commit()
    per_call, winners, allocated = time_in_memory(bids, auction.offered)
    gc.collect()  # each clearing starts from a collected heap, not from the garbage above
    recorder: AbstractContextManager[Recorded | None] = (
        recording(app.engine) if record else nullcontext(None)
    )
    async with app.maker() as session:
        with recorder as recorded:
            start = harness.now()
            result = await trading_service.clear_auction(
                session, listing_id=auction.listing_id, terms=TERMS
            )
            await session.commit()
            seconds = harness.now() - start
    problems = []
    if result is None:
        raise SystemExit(f"auction {auction.listing_id} was not cleared (still open?)")
    if (result.winners, result.quantity_allocated) != (winners, allocated):
        problems.append(
            f"clear_auction: {result.winners} winners, {result.quantity_allocated} units; "
            f"clear() in memory: {winners} winners, {allocated} units"
        )
    row = await conn.fetchrow(LEDGER_SQL, [auction.listing_id])
    orders = await conn.fetchval(
        'SELECT count(DISTINCT o.id) FROM "order" o JOIN order_line l ON l.order_id = o.id '
        "WHERE l.listing_id = $1 AND o.source = 'auction'",
        auction.listing_id,
    )
    facts = (row["quantity_reserved"], row["reserved_moved"], row["units"])
    counts = (row["reserves"], row["references"], row["lines"], orders)
    if (
        row["quantity_available"] < 0
        or facts != (result.quantity_allocated,) * 3
        or counts != (result.winners,) * 4
        or result.quantity_allocated > auction.offered
    ):
        problems.append(
            f"auction {auction.listing_id}: offered {auction.offered}, available "
            f"{row['quantity_available']}, reserved {row['quantity_reserved']}, reserve "
            f"movements {row['reserves']} ({row['reserved_moved']} units), order lines "
            f"{row['lines']} ({row['units']} units), orders {orders}; the clearing allocated "
            f"{result.quantity_allocated} units to {result.winners} winners"
        )
    rate = winners / per_call if per_call > 0 else 0.0
    return Clearing(
        auction.bids, auction.offered, result.winners, result.quantity_allocated, seconds, rate,
        problems, recorded,
    )  # fmt: skip


# ---------------------------------------------------------------- the run


async def measure(url: str, server: harness.Server, options: Options) -> None:
    app = App(url)
    conn = await asyncpg.connect(plain_url(url))
    restore_logging = _access_log_to_devnull()
    try:
        with harness.progress() as bar:
            setup = await populate(app.maker, options, bar)
            orders = await measure_orders(app, setup, conn, options, bar)
            task = bar.add_task("Auction clearings", total=len(setup.auctions))
            # a running platform's order tables hold history and autovacuum has analysed
            # them; statistics of the empty tables from set-up would leave PostgreSQL's
            # cached key-check plans scanning them whole (quadratic in the winners)
            await conn.execute("ANALYZE")
            await clear_one(app, conn, setup.warm_up, record=False)
            clearings = []
            recorded = min(range(len(setup.auctions)), key=lambda i: setup.auctions[i].bids)
            for i, auction in enumerate(setup.auctions):  # round by round, each size once
                # the first smallest one's statements are recorded (a few microseconds each)
                clearings.append(await clear_one(app, conn, auction, record=i == recorded))
                bar.update(task, advance=1)
    finally:
        restore_logging()
        await conn.close()
        await app.close()
    version = await harness.server_version(url)
    report(orders, clearings, options, server, version)


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:,.0f}"


def report(
    orders: OrderFigures,
    clearings: list[Clearing],
    options: Options,
    server: harness.Server,
    version: str,
) -> None:
    out.print()
    out.print(
        f"[bold]{TITLE}[/]: {options.buyers} concurrent buyers through the real app (httpx over "
        f"ASGI, every request committing), {options.rounds} interleaved rounds of {WAVES} "
        f"wave{'s' if WAVES > 1 else ''} of {options.buyers} orders per side; auction "
        f"clearings of {', '.join(f'{n:,}' for n in options.bids)} "
        f"sealed bids; PostgreSQL {version} ({server.describe()}); "
        f"Python {platform.python_version()}",
        highlight=False,
        soft_wrap=True,
    )
    hot, spread = orders.tallies["hot"], orders.tallies["spread"]
    table = Table(
        title="Order placement: one hot listing vs spread over many",
        title_justify="left",
        caption_justify="left",
    )
    for name in ("case", "orders", "orders/s", "p50 ms", "p95 ms", "max ms", "spread"):
        table.add_column(name, justify="left" if name == "case" else "right")
    for side, tally, what in (
        ("hot", hot, "all buyers, one listing"),
        ("spread", spread, f"one buyer per listing, {options.buyers} listings"),
    ):
        lat = orders.latencies[side]
        table.add_row(
            f"{side}: {what}",
            f"{tally.count:,}",
            f"{tally.rate:,.1f}",
            _ms(lat, 0.5),
            _ms(lat, 0.95),
            f"{max(lat) * 1000:,.0f}" if lat else "-",
            f"±{tally.spread / 2:.0%}",
        )
    table.caption = (
        "orders/s = orders of one unit ÷ seconds from the first request of a wave to the last "
        "answer, over all waves. Latency per order (request to answer). Spread = half the "
        "range of the per-wave rates."
    )
    out.print(table)
    ratio = hot.rate / spread.rate if spread.rate else 0.0
    verdict = "met" if ratio >= TARGET_HOT_RATIO else "MISSED"
    out.print(
        f"hot/spread = {hot.rate:,.1f} / {spread.rate:,.1f} orders/s = {ratio:.2f}x "
        f"(target ≥ {TARGET_HOT_RATIO:.2f}x: {verdict}). Oversell: none; after each of "
        f"{orders.checks} rounds every listing had available ≥ 0, reserved = units ordered = "
        "order lines, and exactly one `reserve` stock movement per order.",
        highlight=False,
        soft_wrap=True,
    )
    rec = orders.recorded
    held = rec.lock_held()
    out.print(
        f"One order alone (recorded after the warm-up): {len(rec.statements)} statements "
        f"({_kinds(rec.statements, 1, top=12)}), {rec.db_seconds * 1000:.0f} ms waiting for "
        "PostgreSQL"
        + (
            f"; the listing's row lock is held from the reservation to COMMIT for "
            f"{held[0] * 1000:.0f} ms, {held[1]} statements (a hot listing's ceiling with "
            f"several app processes: about {1 / held[0]:,.0f} orders/s)"
            if held and held[0] > 0
            else ""
        )
        + ".",
        highlight=False,
        soft_wrap=True,
    )
    race = orders.race
    codes = ", ".join(
        f"{n} × {status}{f' {code}' if code else ''}"
        for (status, code), n in sorted(race.statuses.items(), key=lambda x: x[0][0])
    )
    won = race.statuses[(201, None)]
    want = min(RACE_UNITS, options.buyers)
    refused = race.statuses[(409, "insufficient_stock")]
    ok = won == want and refused == options.buyers - want and not orders.race_state
    out.print(
        f"Race: {options.buyers} buyers at once for the last {RACE_UNITS} units: {codes} in "
        f"{race.seconds:.2f} s → {'ok' if ok else 'FAILED'} (expected {want} × 201, "
        f"{options.buyers - want} × 409 insufficient_stock)"
        + ("; " + "; ".join(orders.race_state) if orders.race_state else "; ledger balanced"),
        highlight=False,
        soft_wrap=True,
    )

    table = Table(
        title="Auction clearing with results written (clear_auction + commit)",
        title_justify="left",
        caption_justify="left",
    )
    for name in (
        "bids", "offered", "winners", "allocated", "seconds", "alloc/s", "range",
        "clear() alloc/s",
        "db/clear()", f"≥ {TARGET_ALLOCATIONS:,}/s",
    ):  # fmt: skip
        table.add_column(name, justify="right")
    by_size: dict[int, list[Clearing]] = {}
    for c in clearings:
        by_size.setdefault(c.bids, []).append(c)
    for size, runs in by_size.items():
        rates = sorted(c.winners / c.seconds if c.seconds else 0.0 for c in runs)
        rate = statistics.median(rates)
        memory_rate = statistics.median(c.memory_rate for c in runs)
        first = runs[0]  # the same bids every round: same offer, winners and units
        table.add_row(
            f"{size:,}",
            f"{first.offered:,}",
            f"{first.winners:,}",
            f"{first.allocated:,}",
            f"{statistics.median(c.seconds for c in runs):.2f}",
            f"{rate:,.0f}",
            f"{rates[0]:,.0f}–{rates[-1]:,.0f}" if len(rates) > 1 else "-",
            f"{memory_rate:,.0f}",
            f"{rate / memory_rate:.2g}x" if memory_rate else "-",
            "met" if rate >= TARGET_ALLOCATIONS else "MISSED",
        )
    table.caption = (
        f"offered/allocated in units. Each size is cleared {len(clearings) // len(by_size)} "
        "times, once per round (the same bids each time, on a listing of its own); seconds "
        "and alloc/s are the medians, range = slowest–fastest clearing. seconds = "
        "clear_auction() including the commit; alloc/s = winning bids ÷ seconds (every winner "
        "gets an order: order, fulfilment, line, reservation, notifications, through the "
        "orders service's set-based place_agreed_orders); the target is judged on the median. "
        "clear() alloc/s = winning bids ÷ seconds of market.trading.clearing.clear() of the "
        "same bids in memory; db/clear() = their ratio."
    )
    out.print(table)
    problems = [p for c in clearings for p in c.problems]
    if problems:
        out.print("[red]Clearing results differ from clear() or the ledger:[/]")
        for p in problems:
            out.print("  " + p, highlight=False, markup=False)
    else:
        out.print(
            "Every clearing matched clear() in memory (winners, units) and the ledger: reserved "
            "= allocated, one `reserve` movement, one order line and one order per winner.",
            highlight=False,
            soft_wrap=True,
        )
    for profiled in clearings:
        if profiled.recorded is None:
            continue
        statements, waited = profiled.recorded.statements, profiled.recorded.db_seconds
        n = len(statements)
        out.print(
            f"Where the time goes (the first clearing of {profiled.bids:,} bids above, "
            f"{profiled.winners:,} winners, its statements recorded): {profiled.seconds:.2f} s, "
            f"{n:,} statements whatever the number of winners; "
            f"{waited:.2f} s ({waited / profiled.seconds:.0%}) waiting for "
            f"PostgreSQL (sending the arrays and COPY rows included), the rest Python. The "
            f"slowest: "
            f"{_slowest(statements, profiled.recorded.waited, top=8)}",
            highlight=False,
            soft_wrap=True,
        )


def _kinds(statements: list[str], per: int, *, top: int) -> str:
    counts = Counter(kind_of(s) for s in statements).most_common()
    shown = [f"{kind} {n / per:.1f}" if per > 1 else f"{kind} {n}" for kind, n in counts[:top]]
    rest = sum(n for _, n in counts[top:])
    if rest:
        shown.append(f"other {rest / per:.1f}" if per > 1 else f"other {rest}")
    return ", ".join(shown)


def _slowest(statements: list[str], waited: list[float], *, top: int) -> str:
    by_kind: Counter[str] = Counter()
    for sql, seconds in zip(statements, waited, strict=False):
        by_kind[kind_of(sql)] += seconds
    return ", ".join(
        f"{kind} {seconds * 1000:.1f} ms" for kind, seconds in by_kind.most_common(top)
    )


def run(options: Options) -> None:
    with harness.postgres_server() as server, harness.fresh_database(server) as url:
        asyncio.run(measure(url, server, options))
