"""Benchmark data: Baiyin cooperatives, their products and member households, lots, and a
sourcing ledger of any size with a valid hash chain, streamed into PostgreSQL.

    python -m bench.generate --lots 10000 --records 1000000 [--verify]
    python -m bench.generate --into postgresql://…/agribridge --lots 100 --records 5000

Without --into, the data goes into a fresh database on the benchmarks' server
(MARKET_BENCH_DATABASE_URL, else embedded PostgreSQL), which is dropped at the end: that run
measures the generator itself (time, peak memory). With --into it is appended to an existing
migrated database and kept (after the chain head that is there: the chain stays valid).

What is written, in one transaction that holds the chain head's row lock from start to end:

* an authority (the registry keeper) and cooperatives (verified, in the poverty counties
  620421 靖远县, 620422 会宁县, 620423 景泰县), each with two products;
* member households per cooperative: registered and poor now, registered and exited from
  poverty at some date within the purchase period, registered and never poor, and unregistered
  (added by the cooperative: never poor), in a mix that differs between cooperatives;
* lots (harvest date within the last two years) and sourcing records spread over them at
  random: purchases from member households, about 1% reversals of an earlier purchase of the
  same lot, each followed by the corrected purchase;
* every record's seq, prev_hash and hash computed with market.sourcing.ledger exactly as
  market.sourcing.service._append does, so `market sourcing verify` passes; finally the chain
  head moves to the last record.

Rows are produced lazily and copied with asyncpg's COPY in batches (default 20,000), the next
batch being produced in a worker thread while the server ingests the current one, so that
memory stays flat however many records are asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import itertools
import random
import resource
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psutil
from rich.progress import Progress

from bench import harness
from bench.harness import err, out
from market.catalog.service import china_today
from market.db import plain_url
from market.sourcing import ledger
from market.sourcing.service import amount_fen, new_trace_code

BAIYIN_COUNTIES = ("620421", "620422", "620423")  # 靖远县, 会宁县, 景泰县
COUNTY_NAMES = {"620421": "靖远县", "620422": "会宁县", "620423": "景泰县"}
BATCH = 20_000


@dataclass(frozen=True)
class ProductKind:
    name_zh: str
    name_en: str
    category: str
    brand: str | None
    unit: str
    box_net_weight_g: int | None
    shelf_life_days: int
    storage: str
    price: tuple[int, int]  # fen per pricing unit (per kg, or per piece)
    quantity: tuple[int, int]  # one purchase, in base units (grams, or pieces)


PRODUCT_KINDS = (
    ProductKind(
        "靖远枸杞", "Jingyuan wolfberry", "dried_fruit_nuts", "靖远枸杞", "kg", None, 540,
        "ambient", (3_800, 7_200), (2_000, 60_000),
    ),
    ProductKind(
        "景泰和尚头面粉", "Jingtai monk's-head flour", "flour_noodles", "景泰和尚头", "box",
        5_000, 270, "ambient", (260, 420), (50_000, 1_500_000),
    ),
    ProductKind(
        "会宁小米", "Huining millet", "grains", "会宁小杂粮", "jin", None, 365, "ambient",
        (560, 980), (20_000, 600_000),
    ),
    ProductKind(
        "靖远小口大枣", "Jingyuan jujube", "dried_fruit_nuts", None, "kg", None, 365, "ambient",
        (1_200, 2_800), (5_000, 200_000),
    ),
    ProductKind(
        "会宁土鸡蛋", "Huining free-range eggs", "eggs_poultry", None, "piece", None, 30,
        "chilled", (70, 140), (30, 900),
    ),
    ProductKind(
        "景泰黄河蜜瓜", "Jingtai Yellow River melon", "fresh_fruit", None, "kg", None, 20,
        "chilled", (300, 700), (50_000, 800_000),
    ),
)  # fmt: skip

SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
GIVEN = "建国秀英德福玉兰志强桂花明亮红梅永平淑珍海军春燕文华金凤"
VILLAGES = ("北湾", "东湾", "平堡", "乌兰", "三滩", "大芦", "红岘", "郭城", "中泉", "草窝滩")
GRADES = ("特级", "一级", "二级")
POOR_SINCE = dt.date(2014, 1, 1)
MEMBERS_SINCE = dt.date(2016, 1, 1)


@dataclass(frozen=True)
class Spec:
    lots: int = 10_000
    records: int = 1_000_000
    cooperatives: int = 0  # 0: one per 100 lots, at least 3 and at most 120
    members: int = 60  # member households per cooperative
    batch: int = BATCH
    seed: int = 20_261_130
    analyze: bool = True  # VACUUM ANALYZE what was written, as autovacuum would later

    @property
    def cooperative_count(self) -> int:
        return self.cooperatives or max(3, min(120, self.lots // 100))


@dataclass
class Generated:
    """What was written (ids kept only for cooperatives, products and lots)."""

    authority_id: uuid.UUID
    cooperative_ids: list[uuid.UUID]
    product_ids: list[uuid.UUID]
    lot_ids: list[uuid.UUID]
    households: int
    records: int
    reversals: int
    first_seq: int
    last_seq: int
    seconds: float = 0.0
    record_seconds: float = 0.0
    peak_rss: int = 0
    rss_before: int = 0


# ---------------------------------------------------------------- memory


class PeakRss:
    """Samples this process's resident memory in a thread; `peak` is the highest seen."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = harness.process_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, int(self._process.memory_info().rss))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, harness.process_rss_bytes())


def max_rss_bytes() -> int:
    """The kernel's high-water mark of this process's resident memory (ru_maxrss, KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ---------------------------------------------------------------- the world around the lots


@dataclass
class Cooperative:
    id: uuid.UUID
    county: str
    products: list[tuple[uuid.UUID, ProductKind]] = field(default_factory=list)
    households: list[uuid.UUID] = field(default_factory=list)


@dataclass
class World:
    authority: tuple[Any, ...]
    cooperatives: list[Cooperative]
    organisations: list[tuple[Any, ...]]
    products: list[tuple[Any, ...]]
    households: list[tuple[Any, ...]]
    periods: list[tuple[Any, ...]]
    members: list[tuple[Any, ...]]


ORGANISATION_COLUMNS = (
    "id", "kind", "name_zh", "name_en", "region_code", "description", "contact_phone",
    "verification_status", "verified_at",
)  # fmt: skip
PRODUCT_COLUMNS = (
    "id", "cooperative_id", "category_code", "name_zh", "name_en", "regional_brand", "unit",
    "box_net_weight_g", "shelf_life_days", "storage_class", "description",
)  # fmt: skip
HOUSEHOLD_COLUMNS = (
    "id", "registry_id", "county_code", "head_name", "id_number_hash", "id_number_last4",
    "phone", "village", "registry_organisation_id", "added_by_cooperative_id",
)  # fmt: skip
PERIOD_COLUMNS = ("id", "household_id", "valid_from", "valid_until")
MEMBER_COLUMNS = ("cooperative_id", "household_id", "joined_on", "left_on")
LOT_COLUMNS = (
    "id", "cooperative_id", "product_id", "trace_code", "harvest_date", "production_date",
    "grade", "storage_place", "note",
)  # fmt: skip
RECORD_COLUMNS = (*ledger.CHAINED_FIELDS, "prev_hash", "hash")


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, rng.choice((1, 2))))


def build_world(spec: Spec, rng: random.Random, today: dt.date) -> World:
    """Organisations, products, households, poor periods and memberships: small, in memory."""
    run = secrets.token_hex(3)  # registry ids and ID hashes stay unique across runs
    now = dt.datetime.now(dt.UTC)
    authority_id = uuid.uuid4()
    authority: tuple[Any, ...] = (
        authority_id, "authority", "白银市乡村振兴局（压测）", "Baiyin Rural Revitalisation Bureau",
        "620400", "压测数据：住户登记机关", None, "verified", now,
    )  # fmt: skip
    organisations = [authority]
    cooperatives: list[Cooperative] = []
    products: list[tuple[Any, ...]] = []
    households: list[tuple[Any, ...]] = []
    periods: list[tuple[Any, ...]] = []
    members: list[tuple[Any, ...]] = []
    exits_from = today - dt.timedelta(days=700)
    for c in range(spec.cooperative_count):
        county = BAIYIN_COUNTIES[c % len(BAIYIN_COUNTIES)]
        coop = Cooperative(uuid.uuid4(), county)
        kinds = rng.sample(PRODUCT_KINDS, 2)
        organisations.append(
            (
                coop.id, "cooperative",
                f"{COUNTY_NAMES[county]}{kinds[0].name_zh[-2:]}种植专业合作社（压测{c + 1:03d}）",
                f"Benchmark cooperative {c + 1} ({kinds[0].name_en})", county,
                "压测数据", f"0943-{rng.randint(1_000_000, 9_999_999)}", "verified", now,
            )
        )  # fmt: skip
        for kind in kinds:
            product_id = uuid.uuid4()
            coop.products.append((product_id, kind))
            products.append(
                (
                    product_id, coop.id, kind.category, kind.name_zh, kind.name_en, kind.brand,
                    kind.unit, kind.box_net_weight_g, kind.shelf_life_days, kind.storage,
                    "压测数据",
                )
            )  # fmt: skip
        poor_fraction = rng.uniform(0.1, 0.7)  # some cooperatives source mostly from the poor
        for m in range(spec.members):
            household_id = uuid.uuid4()
            draw = rng.random()
            registered = draw < poor_fraction + 0.35
            serial = f"{run}-{c:03d}-{m:04d}"
            households.append(
                (
                    household_id,
                    f"{county}-{serial}" if registered else None,
                    county,
                    _name(rng),
                    hashlib.sha256(f"bench-id:{serial}".encode()).digest() if registered else None,
                    f"{rng.randint(0, 9999):04d}" if registered else None,
                    f"139{rng.randint(0, 99_999_999):08d}",
                    rng.choice(VILLAGES) + "村",
                    authority_id if registered else None,
                    None if registered else coop.id,
                )
            )
            if draw < poor_fraction:  # poor now
                periods.append((uuid.uuid4(), household_id, POOR_SINCE, None))
            elif draw < poor_fraction + 0.2:  # exited poverty at some date within the purchases
                exit_on = exits_from + dt.timedelta(days=rng.randint(0, 680))
                periods.append((uuid.uuid4(), household_id, POOR_SINCE, exit_on))
            # else registered and never poor, or unregistered (never poor)
            members.append((coop.id, household_id, MEMBERS_SINCE, None))
            coop.households.append(household_id)
        cooperatives.append(coop)
    return World(authority, cooperatives, organisations, products, households, periods, members)


def lot_rows(
    spec: Spec, world: World, rng: random.Random, today: dt.date
) -> tuple[list[tuple[Any, ...]], list[tuple[Cooperative, uuid.UUID, ProductKind, dt.date]]]:
    """The lots, and per lot what its records need (cooperative, product, harvest date)."""
    rows: list[tuple[Any, ...]] = []
    facts: list[tuple[Cooperative, uuid.UUID, ProductKind, dt.date]] = []
    codes: set[str] = set()
    for _ in range(spec.lots):
        coop = rng.choice(world.cooperatives)
        product_id, kind = rng.choice(coop.products)
        harvest = today - dt.timedelta(days=rng.randint(30, 730))
        code = new_trace_code(coop.county)
        while code in codes:  # 40 random bits: a repeat is unlikely but possible
            code = new_trace_code(coop.county)
        codes.add(code)
        processed = kind.unit in ("box", "piece")
        rows.append(
            (
                uuid.uuid4(), coop.id, product_id, code,
                None if processed else harvest, harvest if processed else None,
                rng.choice(GRADES), f"{COUNTY_NAMES[coop.county]}{rng.choice(VILLAGES)}冷库",
                None,
            )
        )  # fmt: skip
        facts.append((coop, product_id, kind, harvest))
    return rows, facts


# ---------------------------------------------------------------- the ledger, lazily


@dataclass
class ChainState:
    """Where the chain stands while records stream out; read at the end for the head."""

    seq: int
    hash: bytes
    records: int = 0
    reversals: int = 0


def record_rows(
    spec: Spec,
    lots: Sequence[tuple[Any, ...]],
    facts: Sequence[tuple[Cooperative, uuid.UUID, ProductKind, dt.date]],
    rng: random.Random,
    today: dt.date,
    chain: ChainState,
) -> Iterator[tuple[Any, ...]]:
    """`spec.records` sourcing records in chain order, each hashed onto the previous one as
    market.sourcing.service._append does. Yields COPY rows in RECORD_COLUMNS order."""
    # per lot: its latest purchase that is not reversed yet (a correction's target)
    last_purchase: list[dict[str, Any] | None] = [None] * len(lots)
    pending: tuple[int, dict[str, Any]] | None = None  # a correction's new purchase, next
    r = rng.random  # the cheap draw: randint() costs several times more per call
    days = [dt.timedelta(days=d) for d in range(26)]
    receipt_prefix: dict[dt.date, str] = {}  # purchase date -> "SG20260415"
    midnight: dict[dt.date, dt.datetime] = {}
    n_lots = len(lots)
    produced = 0
    while produced < spec.records:
        if pending is not None:
            index, values = pending
            pending = None
        else:
            index = int(r() * n_lots)
            target = last_purchase[index]
            if target is not None and r() < 0.01 and spec.records - produced >= 2:
                # a correction: reverse the lot's latest purchase, then buy the right quantity
                values = {
                    "lot_id": target["lot_id"],
                    "cooperative_id": target["cooperative_id"],
                    "household_id": target["household_id"],
                    "kind": "reversal",
                    "reverses_seq": target["seq"],
                    "quantity": -target["quantity"],
                    "unit_price_fen": target["unit_price_fen"],
                    "amount_fen": -target["amount_fen"],
                    "purchase_date": target["purchase_date"],
                    "evidence_ref": target["evidence_ref"],
                    "evidence_url": None,
                    "reason": "过磅数量有误，冲正",
                    "recorded_by_id": None,
                }
                last_purchase[index] = None
                quantity = max(1, target["quantity"] + int(r() * 1001) - 500)
                corrected = {
                    **target,
                    "quantity": quantity,
                    "amount_fen": amount_fen(quantity, target["unit_price_fen"], target["per"]),
                    "evidence_url": None,
                    "reason": f"更正第{target['seq']}条的数量",
                }
                pending = (index, corrected)
                chain.reversals += 1
            else:
                coop, _product_id, kind, harvest = facts[index]
                purchase_date = harvest + days[int(r() * 26)]
                if purchase_date > today:
                    purchase_date = today
                low, high = kind.quantity
                quantity = low + int(r() * (high - low + 1))
                low, high = kind.price
                price = low + int(r() * (high - low + 1))
                per = 1 if kind.unit == "piece" else 1000  # catalog_service.pricing_unit
                households = coop.households
                prefix = receipt_prefix.get(purchase_date)
                if prefix is None:
                    prefix = receipt_prefix[purchase_date] = f"SG{purchase_date:%Y%m%d}"
                values = {
                    "lot_id": lots[index][0],
                    "cooperative_id": coop.id,
                    "household_id": households[int(r() * len(households))],
                    "kind": "purchase",
                    "reverses_seq": None,
                    "quantity": quantity,
                    "unit_price_fen": price,
                    "amount_fen": amount_fen(quantity, price, per),
                    "purchase_date": purchase_date,
                    "evidence_ref": f"{prefix}{int(r() * 100_000):05d}",
                    "evidence_url": None,
                    "reason": None,
                    "recorded_by_id": None,
                    "per": per,  # not a column: the pricing unit, for corrections
                }
        day = values["purchase_date"]
        start = midnight.get(day)
        if start is None:
            start = midnight[day] = dt.datetime.combine(day, dt.time(1, 0), dt.UTC)
        seq = chain.seq + 1
        values["seq"] = seq
        values["id"] = uuid.uuid4()
        values["recorded_at"] = start + dt.timedelta(microseconds=int(r() * 40_000_000_000))
        values["prev_hash"] = chain.hash
        values["hash"] = ledger.chain_hash(chain.hash, values)
        if values["kind"] == "purchase":
            last_purchase[index] = values
        chain.seq, chain.hash = seq, values["hash"]
        chain.records += 1
        produced += 1
        yield tuple([values[name] for name in RECORD_COLUMNS])


def batches(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# ---------------------------------------------------------------- writing


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


async def generate(
    url: str, spec: Spec, bar: Progress | None = None, *, seed_rng: random.Random | None = None
) -> Generated:
    """Write the data set into the (migrated) database at `url`; see the module docstring."""
    rng = seed_rng or random.Random(spec.seed)
    today = china_today()
    started = time.perf_counter()
    conn = await asyncpg.connect(plain_url(url))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-generate")
    loop = asyncio.get_running_loop()
    try:
        async with conn.transaction():
            head = await conn.fetchrow(
                "SELECT last_seq, last_hash FROM sourcing_chain_head WHERE id = 1 FOR UPDATE"
            )
            if head is None:
                raise SystemExit("sourcing_chain_head has no row: is the database migrated?")
            chain = ChainState(seq=int(head["last_seq"]), hash=bytes(head["last_hash"]))
            first_seq = chain.seq + 1

            world = build_world(spec, rng, today)
            lots, facts = lot_rows(spec, world, rng, today)
            setup = [
                ("organisation", ORGANISATION_COLUMNS, world.organisations),
                ("product", PRODUCT_COLUMNS, world.products),
                ("household", HOUSEHOLD_COLUMNS, world.households),
                ("poor_status_period", PERIOD_COLUMNS, world.periods),
                ("cooperative_member", MEMBER_COLUMNS, world.members),
                ("lot", LOT_COLUMNS, lots),
            ]
            task = None
            if bar is not None:
                task = bar.add_task(
                    "Cooperatives, households, products, lots",
                    total=sum(len(rows) for _, _, rows in setup),
                )
            for table, columns, rows in setup:
                for chunk in batches(rows, spec.batch):
                    await _copy(conn, table, columns, chunk)
                    if bar is not None and task is not None:
                        bar.update(task, advance=len(chunk))

            records_started = time.perf_counter()
            task = bar.add_task("Sourcing records", total=spec.records) if bar else None
            stream = batches(record_rows(spec, lots, facts, rng, today, chain), spec.batch)

            def take() -> list[tuple[Any, ...]] | None:
                return next(stream, None)

            upcoming = loop.run_in_executor(pool, take)
            while (ready := await upcoming) is not None:
                upcoming = loop.run_in_executor(pool, take)  # hash the next while COPY runs
                await _copy(conn, "sourcing_record", RECORD_COLUMNS, ready)
                if bar is not None and task is not None:
                    bar.update(task, advance=len(ready))
                del ready  # only the batch being hashed stays alive
            record_seconds = time.perf_counter() - records_started

            await conn.execute(
                "UPDATE sourcing_chain_head SET last_seq = $1, last_hash = $2 WHERE id = 1",
                chain.seq,
                chain.hash,
            )
        if spec.analyze:
            task = bar.add_task("VACUUM ANALYZE", total=1) if bar else None
            for table in ("sourcing_record", "lot", "household", "poor_status_period"):
                await conn.execute(f"VACUUM (ANALYZE) {table}")
            await conn.execute("ANALYZE organisation, product, cooperative_member")
            if bar is not None and task is not None:
                bar.update(task, advance=1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        await conn.close()
    return Generated(
        authority_id=world.authority[0],
        cooperative_ids=[c.id for c in world.cooperatives],
        product_ids=[row[0] for row in world.products],
        lot_ids=[row[0] for row in lots],
        households=len(world.households),
        records=chain.records,
        reversals=chain.reversals,
        first_seq=first_seq,
        last_seq=chain.seq,
        seconds=time.perf_counter() - started,
        record_seconds=record_seconds,
    )


async def generate_measured(url: str, spec: Spec, bar: Progress | None = None) -> Generated:
    """generate() with this process's peak resident memory sampled while it runs."""
    before = harness.process_rss_bytes()
    with PeakRss() as sampler:
        generated = await generate(url, spec, bar)
    generated.peak_rss = sampler.peak
    generated.rss_before = before
    return generated


def describe(generated: Generated) -> str:
    return (
        f"{len(generated.cooperative_ids)} cooperatives, {len(generated.product_ids)} products, "
        f"{generated.households:,} households, {len(generated.lot_ids):,} lots, "
        f"{generated.records:,} sourcing records ({generated.reversals:,} reversals, each with "
        f"its corrected purchase; seq {generated.first_seq:,}–{generated.last_seq:,})"
    )


def memory_line(generated: Generated) -> str:
    return (
        f"peak resident memory while generating {harness.mib(generated.peak_rss)} (sampled every "
        f"20 ms; {harness.mib(generated.rss_before)} before it started; process high-water mark "
        f"ru_maxrss {harness.mib(max_rss_bytes())})"
    )


# ---------------------------------------------------------------- standalone


async def _verify(url: str, records: int) -> tuple[bool, str]:
    from market.db import create_engine, create_sessionmaker
    from market.sourcing.service import verify_chain

    engine = create_engine(url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            with harness.progress() as bar:
                task = bar.add_task("Verifying the chain", total=records)
                result = await verify_chain(session, progress=lambda n: bar.update(task, advance=n))
    finally:
        await engine.dispose()
    if result.ok:
        return True, f"the chain verifies: {result.checked:,} records, head at {result.head_seq:,}"
    assert result.first_break is not None
    return False, (
        f"the chain breaks at record {result.first_break.seq} ({result.first_break.reason})"
    )


async def _standalone(url: str, spec: Spec, verify: bool) -> int:
    with harness.progress() as bar:
        generated = await generate_measured(url, spec, bar)
    rate = generated.records / generated.record_seconds if generated.record_seconds else 0.0
    out.print(f"Generated {describe(generated)}", highlight=False, soft_wrap=True)
    out.print(
        f"in {generated.seconds:.1f} s (records: {generated.record_seconds:.1f} s, "
        f"{rate:,.0f}/s, batches of {spec.batch:,})",
        highlight=False,
    )
    out.print("Peak " + memory_line(generated)[5:], highlight=False, soft_wrap=True)
    if verify:
        total = await _count(url)
        ok, message = await _verify(url, total)
        out.print(("OK: " if ok else "FAILED: ") + message, highlight=False)
        return 0 if ok else 1
    return 0


async def _count(url: str) -> int:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM sourcing_record"))
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    defaults = Spec()
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate",
        description="Generate benchmark data: cooperatives, households, lots and a valid "
        "hash-chained sourcing ledger, streamed with COPY. Without --into, into a fresh "
        f"database on {harness.ENV_URL} (else embedded PostgreSQL), dropped at the end.",
    )
    parser.add_argument("--lots", type=int, default=defaults.lots, help="default %(default)s")
    parser.add_argument("--records", type=int, default=defaults.records, help="default %(default)s")
    parser.add_argument(
        "--cooperatives", type=int, default=0, help="default: one per 100 lots (3 to 120)"
    )
    parser.add_argument(
        "--members",
        type=int,
        default=defaults.members,
        help="households per cooperative (default %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=defaults.batch, help="rows per COPY")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--into",
        metavar="URL",
        help="an existing migrated database to append to (kept), e.g. the demo's",
    )
    parser.add_argument(
        "--verify", action="store_true", help="run the chain verification afterwards"
    )
    args = parser.parse_args(argv)
    for name in ("lots", "members", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.records < 0 or args.cooperatives < 0:
        parser.error("--records and --cooperatives cannot be negative")
    spec = Spec(
        lots=args.lots,
        records=args.records,
        cooperatives=args.cooperatives,
        members=args.members,
        batch=args.batch,
        seed=args.seed,
    )
    try:
        if args.into:
            from market.db import async_url

            return asyncio.run(_standalone(async_url(args.into), spec, args.verify))
        with harness.postgres_server() as server, harness.fresh_database(server) as url:
            err.print(f"PostgreSQL: {server.describe()}", highlight=False)
            return asyncio.run(_standalone(url, spec, args.verify))
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
