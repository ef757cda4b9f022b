"""Poor-household shares of many lots: the sourcing service against the same SQL on raw asyncpg.

The data set is bench/generate.py's: --lots lots (default 10,000) over --records sourcing
records (default 1,000,000) with a valid hash chain, in a fresh database, vacuumed and analysed.

* service -- market.sourcing.service.compute_lot_shares(session, lot_ids): the full
  computation for every lot at once, on an AsyncSession from market.db.create_engine /
  create_sessionmaker, including its session, transaction and LotShare objects;
* raw     -- LOT_SHARES_SQL's text with the same parameter on one asyncpg connection, rows
  fetched and nothing else;
* stored  -- market.sourcing.service.lot_shares(session, lot_ids), what the API and the audit
  read call: figures stored by an earlier call, each checked against its lot's last record and
  the registry version (recomputed and stored when stale). After the warm-up they are fresh.

Before timing, the service's statements are recorded and must be exactly the raw side's one
statement, and both sides must give identical figures for every lot. The sides then alternate
over --rounds rounds (rotating which goes first), after one warm-up computation each. Printed:
seconds per full computation for each side, the ratio raw/service (1.00x = the service costs
nothing over its SQL; the target is at least 0.50x) and whether the service stays under 1 s.
"""

from __future__ import annotations

import asyncio
import json
import platform
import re
import statistics
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench import harness
from bench.generate import Generated, Spec, describe, generate_measured, memory_line
from bench.harness import Options, Tally, err, out
from market.db import create_engine, create_sessionmaker, plain_url
from market.sourcing.service import LOT_SHARES_SQL, LotShare, compute_lot_shares, lot_shares

TITLE = "Poor shares of many lots"
TARGET_RATIO = 0.5
TARGET_SECONDS = 1.0

# the statement as asyncpg receives it: the one named parameter becomes $1
RAW_SQL = re.sub(r"(?<!:):lot_ids\b", "$1", LOT_SHARES_SQL.text)

Figures = tuple[int, int, int, int, int, int, int]


def _normalised(sql: str) -> str:
    return " ".join(sql.split())


def _service_figures(share: LotShare) -> Figures:
    return (
        share.quantity,
        share.value_fen,
        share.poor_quantity,
        share.poor_value_fen,
        share.households,
        share.poor_households,
        share.records,
    )


def _raw_figures(row: asyncpg.Record) -> Figures:
    return (
        int(row["quantity"]),
        int(row["value_fen"]),
        int(row["poor_quantity"]),
        int(row["poor_value_fen"]),
        int(row["households"]),
        int(row["poor_households"]),
        int(row["records"]),
    )


class Sides:
    def __init__(self, url: str, lot_ids: list[uuid.UUID]) -> None:
        self.url = url
        self.lot_ids = lot_ids
        self.engine: AsyncEngine = create_engine(url)
        self.maker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.conn = await asyncpg.connect(plain_url(self.url))

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        await self.engine.dispose()

    async def service(self) -> dict[uuid.UUID, LotShare]:
        async with self.maker() as session:
            shares, _ = await compute_lot_shares(session, self.lot_ids)
            return shares

    async def stored(self) -> dict[uuid.UUID, LotShare]:
        async with self.maker() as session, session.begin():
            return await lot_shares(session, self.lot_ids)

    async def raw(self) -> list[asyncpg.Record]:
        assert self.conn is not None
        rows: list[asyncpg.Record] = await self.conn.fetch(RAW_SQL, self.lot_ids)
        return rows


async def check(sides: Sides, show_sql: bool) -> dict[str, Any]:
    """Same statement, same figures for every lot; returns a few facts for the report."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])  # (conn, cursor, statement, parameters, context, many)

    event.listen(sides.engine.sync_engine, "before_cursor_execute", record)
    try:
        shares = await sides.service()
    finally:
        event.remove(sides.engine.sync_engine, "before_cursor_execute", record)
    if show_sql:
        err.rule("SQL of lot_shares()")
        for sql in statements:
            err.print(sql, highlight=False, markup=False)
    if [_normalised(s) for s in statements] != [_normalised(RAW_SQL)]:
        for sql in statements:
            err.print("  service: " + _normalised(sql), highlight=False, markup=False)
        err.print("  raw:     " + _normalised(RAW_SQL), highlight=False, markup=False)
        raise SystemExit(
            "lot_shares() no longer sends exactly LOT_SHARES_SQL: update bench/shares.py"
        )
    rows = await sides.raw()
    raw = {row["lot_id"]: _raw_figures(row) for row in rows}
    service = {lot_id: _service_figures(s) for lot_id, s in shares.items() if s.records}
    if raw != service:
        differing = sorted(str(k) for k in set(raw) | set(service) if raw.get(k) != service.get(k))
        raise SystemExit(
            f"the service and raw asyncpg disagree on {len(differing)} lots, e.g. {differing[:3]}"
        )
    empty = [s for s in shares.values() if not s.records]
    if any(s.poor_share_bp is not None for s in empty):
        raise SystemExit("a lot without records has a share: it must have none")
    bps = sorted(s.poor_share_bp for s in shares.values() if s.poor_share_bp is not None)
    total = sum(s.value_fen for s in shares.values())
    poor = sum(s.poor_value_fen for s in shares.values())
    return {
        "lots": len(shares),
        "with_share": len(bps),
        "records": sum(s.records for s in shares.values()),
        "median_bp": statistics.median(bps) if bps else None,
        "min_bp": bps[0] if bps else None,
        "max_bp": bps[-1] if bps else None,
        "overall_bp": round(poor * 10_000 / total) if total else None,
    }


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def plan_facts(sides: Sides) -> str:
    """What the planner does with the statement: cost, JIT, correlated subplans, settings."""
    assert sides.conn is not None
    conn = sides.conn
    plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + RAW_SQL, sides.lot_ids))[0]
    subplans = [n for n in _nodes(plan["Plan"]) if n.get("Subplan Name")]
    settings = {
        name: await conn.fetchval(f"SHOW {name}")
        for name in ("jit", "jit_above_cost", "work_mem", "max_parallel_workers_per_gather")
    }
    jit = plan.get("JIT")
    return (
        f"Plan of LOT_SHARES_SQL: estimated cost {plan['Plan']['Total Cost']:,.0f}; "
        + (f"JIT-compiled ({jit['Functions']} functions)" if jit else "no JIT")
        + f"; {len(subplans)} correlated subplan(s) run per record"
        + (f" ({', '.join(sorted({n['Node Type'] for n in subplans}))})" if subplans else "")
        + "; server settings "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
    )


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    start = harness.now()
    await call()
    return harness.now() - start


async def measure(url: str, server: harness.Server, options: Options) -> None:
    spec = Spec(lots=options.lots, records=options.records)
    with harness.progress() as bar:
        generated = await generate_measured(url, spec, bar)
        sides = Sides(url, generated.lot_ids)
        await sides.open()
        try:
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "service": sides.service,
                "raw": sides.raw,
                "stored": sides.stored,
            }
            tasks = {
                side: bar.add_task(f"lot_shares of {len(generated.lot_ids):,} lots: {side}",
                                   total=options.rounds + 1)
                for side in calls
            }  # fmt: skip
            for side, call in calls.items():  # warm-up: plans, caches, the pool
                await call()
                bar.update(tasks[side], advance=1)
            facts = await check(sides, options.show_sql)
            stored = await sides.stored()
            if {k: v for k, v in stored.items() if v.records} != await sides.service():
                raise SystemExit("stored shares differ from the computed ones")
            facts["plan"] = await plan_facts(sides)
            tallies = {side: Tally() for side in calls}
            order = list(calls)
            for _ in range(options.rounds):
                for side in order:
                    tallies[side].add(1, await _timed(calls[side]))
                    bar.update(tasks[side], advance=1)
                order = order[1:] + order[:1]
        finally:
            await sides.close()
    version = await harness.server_version(url)
    report(generated, facts, tallies, options, server, version)


def _bp(value: float | None) -> str:
    return "-" if value is None else f"{value / 100:.2f}%"


def report(
    generated: Generated,
    facts: dict[str, Any],
    tallies: dict[str, Tally],
    options: Options,
    server: harness.Server,
    version: str,
) -> None:
    service, raw = tallies["service"], tallies["raw"]
    per = {side: t.seconds / t.count for side, t in tallies.items()}
    best = {side: 1 / max(t.chunks) for side, t in tallies.items()}
    ratio = per["raw"] / per["service"]
    out.print()
    out.print(
        f"[bold]{TITLE}[/]: lot_shares() of all {facts['lots']:,} lots over "
        f"{facts['records']:,} sourcing records, {options.rounds} interleaved rounds; "
        f"PostgreSQL {version} ({server.describe()}); Python {platform.python_version()}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"Data: {describe(generated)}; generated in {generated.seconds:.0f} s, "
        f"{memory_line(generated)}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"Shares by value: {facts['with_share']:,} lots have one "
        f"(median {_bp(facts['median_bp'])}, "
        f"{_bp(facts['min_bp'])}–{_bp(facts['max_bp'])}; all lots together "
        f"{_bp(facts['overall_bp'])}); service and raw asyncpg agree on every figure of every lot",
        highlight=False,
        soft_wrap=True,
    )
    out.print(facts["plan"], highlight=False, soft_wrap=True)
    table = Table(title=TITLE, title_justify="left", caption_justify="left")
    for name, justify in (
        ("case", "left"),
        ("service s", "right"),
        ("raw s", "right"),
        ("raw/service", "right"),
        ("best service s", "right"),
        ("best raw s", "right"),
        ("spread", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_row(
        f"lot_shares, {facts['lots']:,} lots",
        f"{per['service']:.3f}",
        f"{per['raw']:.3f}",
        f"{ratio:.2f}x",
        f"{best['service']:.3f}",
        f"{best['raw']:.3f}",
        f"±{max(service.spread, raw.spread) / 2:.0%}",
    )
    table.add_row(
        "lot_shares() stored",
        f"{per['stored']:.3f}",
        f"{per['raw']:.3f}",
        f"{per['raw'] / per['stored']:.2f}x",
        f"{best['stored']:.3f}",
        f"{best['raw']:.3f}",
        f"±{tallies['stored'].spread / 2:.0%}",
    )
    table.caption = (
        "Seconds per call for all lots, mean over the rounds. service = compute_lot_shares() "
        "on an AsyncSession (session, transaction, LotShare objects); stored = lot_shares(), "
        "stored figures checked against each lot's last record and the registry version; raw "
        "= the full statement on one asyncpg connection. raw/service = raw s ÷ service s "
        f"(target ≥ {TARGET_RATIO:.2f}x). Spread = half the range of the per-round rates."
    )
    out.print(table)
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    under = "under" if per["stored"] < TARGET_SECONDS else "NOT under"
    out.print(
        f"lot_shares: full computation through the service {per['service']:.3f} s vs raw "
        f"asyncpg {per['raw']:.3f} s → {ratio:.2f}x ({verdict} the {TARGET_RATIO:.2f}x target); "
        f"lot_shares() with stored, checked figures {per['stored']:.3f} s "
        f"({per['raw'] / per['stored']:.1f}x raw; {under} {TARGET_SECONDS:.0f} s)",
        highlight=False,
        soft_wrap=True,
    )


def run(options: Options) -> None:
    with harness.postgres_server() as server, harness.fresh_database(server) as url:
        asyncio.run(measure(url, server, options))
