"""`python -m bench.reindex [--listings N]`: `market search reindex` over N real listing rows,
its time and its peak memory (target at 1,000,000 listings: peak resident memory under 500 MB).

The listings are copies, made in SQL, of one published listing of a verified cooperative with a
lot of sourcing records, each with its own id and title; the reindex then reads them back as
it would any listings (the public rows, the shared analysis, batched upserts) in a separate
`market` process, sampled for its resident memory. Baseline: the same rows read by one plain
`SELECT` of their ids and titles on raw asyncpg, the floor of any streaming reindex.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import psutil

from bench import harness
from bench.harness import err, mib, out
from market.db import create_engine, create_sessionmaker, plain_url

TITLES = (
    "靖远枸杞 特级",
    "宁夏中宁枸杞 头茬",
    "会宁黑瓜子 原味",
    "景泰和尚头面粉 5kg",
    "盐池滩羊肉",
)


async def _seed(url: str, listings: int) -> None:
    from tests.factories_listings import make_listing, make_supply

    engine = create_engine(url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            supply = await make_supply(session, poor_grams=10**12)
            template = await make_listing(session, supply, quantity=10, price_tiers=[])
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(plain_url(url))
    try:
        step = 100_000
        with harness.progress() as bar:
            task = bar.add_task("Copying listings in SQL", total=listings)
            made = 1
            while made < listings:
                n = min(step, listings - made)
                await conn.execute(
                    """
                    INSERT INTO listing (
                        id, cooperative_id, lot_id, product_id, title_zh, sale_mode, status,
                        unit_price_fen, unit_size, min_order_quantity, quantity_listed,
                        quantity_available, delivery_terms, pickup_hub, valid_from,
                        published_at, certification_ids
                    )
                    SELECT gen_random_uuid(), cooperative_id, lot_id, product_id,
                           ($3::text[])[1 + (g % 5)] || ' ' || g, sale_mode, status,
                           unit_price_fen + (g % 5000), unit_size, min_order_quantity,
                           quantity_listed, quantity_available, delivery_terms, pickup_hub,
                           valid_from, published_at, certification_ids
                      FROM listing, generate_series($2::bigint, $2::bigint + $4 - 1) AS g
                     WHERE id = $1
                    """,
                    template.id,
                    made,
                    list(TITLES),
                    n,
                )
                made += n
                bar.update(task, completed=made)
        # the copies' outbox rows: the reindex is what indexes them here
        await conn.execute("TRUNCATE search_outbox")
        await conn.execute("ANALYZE listing")
    finally:
        await conn.close()


async def _baseline(url: str) -> float:
    conn = await asyncpg.connect(plain_url(url))
    try:
        started = time.perf_counter()
        async with conn.transaction():
            async for _ in conn.cursor("SELECT id, title_zh FROM listing WHERE status = 'active'"):
                pass
        return time.perf_counter() - started
    finally:
        await conn.close()


def _market() -> str:
    return str(Path(sys.executable).parent / "market")


def _reindex(url: str, batch: int) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes of the process tree, exit code)."""
    env = {**os.environ, "MARKET_DATABASE_URL": url, "MARKET_LOG_JSON": "false"}
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(
        [_market(), "search", "reindex", "--batch", str(batch)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        proc = psutil.Process(process.pid)
        while not stop.is_set():
            try:
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True)
                )
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    err.print(output.decode(errors="replace").strip(), highlight=False)
    return time.perf_counter() - started, peak, process.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reindex", description=__doc__)
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    with harness.postgres_server() as server, harness.fresh_database(server) as url:
        asyncio.run(_seed(url, args.listings))
        baseline = asyncio.run(_baseline(url))
        seconds, peak, code = _reindex(url, args.batch)
    if code != 0:
        err.print(f"market search reindex exited with {code}")
        return 1
    out.print(
        f"search reindex (PostgreSQL backend), {args.listings:,} listings, batch {args.batch}"
    )
    out.print(
        f"  market search reindex: {seconds:.1f} s ({args.listings / seconds:,.0f} listings/s)"
    )
    out.print(
        f"  baseline, one streamed SELECT of ids and titles: {baseline:.1f} s "
        f"({args.listings / baseline:,.0f} rows/s) → reindex at {baseline / seconds:.3f}x"
    )
    verdict = "met" if peak < 500 * 2**20 else "MISSED"
    out.print(
        f"  peak resident memory of the reindex process: {mib(peak)} (target < 500 MB: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
