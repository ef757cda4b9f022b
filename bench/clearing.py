"""Sealed-bid auction clearing in memory: market.trading.clearing.clear() against a plain sort.

For 10,000, 100,000 and 1,000,000 bids (seeded, so every run clears the same auctions):
unit prices in fen between 38.00 and 52.00 yuan on a 10-fen grid, a third on whole yuan (many
ties); quantities from 5 to 500 kg; 60% accept a partial fill; placed_seq from one shared
sequence, with gaps, and the bids in that order (as loaded by `ORDER BY placed_seq`); a reserve
that about a tenth of the bids miss; on offer, a third of what the bids ask for.

* clear         -- clear(bids, quantity=..., reserve_price_fen=...): validation, the ranking
                   and the walk, the outcomes returned compact (`Outcomes`: a BidOutcome is
                   made when it is read);
* sort          -- sorted(bids, key=ranking_key): a plain sort of the same bids by the same key,
                   the baseline the issue names;
* clear+list    -- list(clear(...)): the same, then every outcome made as a BidOutcome (what a
                   caller that reads all of them pays).

Before timing, one clearing of each size is checked against a walk of the baseline's sorted
list. The sides then alternate over --rounds rounds (rotating which goes first), each call
after a gc.collect() so that none inherits another's garbage. Printed: seconds per call, the
ratios clear/sort and clear+list/sort (1.00x = as fast as the baseline; lower is better) and
whether 1,000,000 bids clear within 1 s. Writing the results to the database (the issue's
≥ 5,000 allocations/s) is measured by `python -m bench trading`.
"""

from __future__ import annotations

import gc
import os
import platform
import random
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from rich.table import Table

from bench import harness
from bench.harness import Options, Tally, err, out
from market.trading.clearing import BidOutcome, SealedBid, clear, ranking_key

TITLE = "Sealed-bid auction clearing"
SIZES = (10_000, 100_000, 1_000_000)
TARGET_BIDS = 1_000_000
TARGET_SECONDS = 1.0
SEED = 20_260_611
QUANTITIES = (5, 10, 20, 25, 50, 100, 200, 500)  # kg
QUANTITY_WEIGHTS = (10, 20, 20, 10, 20, 10, 6, 4)


@dataclass(frozen=True)
class Auction:
    bids: list[SealedBid]
    quantity: int
    reserve_price_fen: int


def make_auction(n: int, seed: int = SEED) -> Auction:
    rng = random.Random(seed + n)
    prices = [
        rng.randrange(3800, 5201, 100) if rng.random() < 1 / 3 else rng.randrange(3800, 5201, 10)
        for _ in range(n)
    ]
    wants = rng.choices(QUANTITIES, QUANTITY_WEIGHTS, k=n)
    seq = rng.randrange(1, 1_000_000)
    bids = []
    for k in range(n):
        seq += rng.randrange(1, 4)  # other auctions' bids take numbers of the same sequence
        bids.append(SealedBid(f"bid-{k:07d}", prices[k], wants[k], rng.random() < 0.6, seq))
    return Auction(
        bids=bids,
        quantity=sum(wants) // 3,
        reserve_price_fen=sorted(prices)[n // 10],
    )


def clear_and_list(auction: Auction) -> list[BidOutcome]:
    """clear(), then every outcome as a BidOutcome."""
    return list(
        clear(auction.bids, quantity=auction.quantity, reserve_price_fen=auction.reserve_price_fen)
    )


def check(auction: Auction, outcomes: Sequence[BidOutcome]) -> dict[str, int]:
    """The outcomes agree with a walk of the baseline's sorted list; returns a few counts."""
    got = {o.bid_id: o for o in outcomes}
    left = auction.quantity
    expected: tuple[int, str | None]
    for bid in sorted(auction.bids, key=ranking_key):
        if bid.unit_price_fen < auction.reserve_price_fen:
            expected = (0, "below_reserve")
        elif left == 0:
            expected = (0, "sold_out")
        elif bid.quantity <= left or bid.partial_ok:
            expected = (min(bid.quantity, left), None)
            left -= expected[0]
        else:
            expected = (0, "needs_full_quantity")
        outcome = got[bid.id]
        if (outcome.quantity, outcome.reason_code) != expected:
            raise SystemExit(f"clear() disagrees with the sorted walk on {bid}: {outcome}")
    statuses = [o.status for o in outcomes]
    return {
        "won": statuses.count("won"),
        "partially_won": statuses.count("partially_won"),
        "lost": statuses.count("lost"),
        "allocated": auction.quantity - left,
    }


def _timed(call: Callable[[], object]) -> float:
    gc.collect()
    start = harness.now()
    result = call()
    seconds = harness.now() - start
    del result
    return seconds


@dataclass
class Case:
    bids: int
    quantity: int
    counts: dict[str, int]
    tallies: dict[str, Tally]


def measure(options: Options) -> list[Case]:
    cases = []
    with harness.progress() as bar:
        for n in SIZES:
            task = bar.add_task(f"clearing {n:,} bids", total=3 * (options.rounds + 1) + 1)
            auction = make_auction(n)
            bar.update(task, advance=1)
            clearing = partial(
                clear,
                auction.bids,
                quantity=auction.quantity,
                reserve_price_fen=auction.reserve_price_fen,
            )
            calls: dict[str, Callable[[], object]] = {
                "clear": clearing,
                "sort": partial(sorted, auction.bids, key=ranking_key),
                "clear+list": partial(clear_and_list, auction),
            }
            # warm-up, which also checks what is being timed
            counts = check(auction, clearing())
            bar.update(task, advance=1)
            for side in ("sort", "clear+list"):
                _timed(calls[side])
                bar.update(task, advance=1)
            tallies = {side: Tally() for side in calls}
            order = list(calls)
            for _ in range(options.rounds):
                for side in order:
                    tallies[side].add(1, _timed(calls[side]))
                    bar.update(task, advance=1)
                order = order[1:] + order[:1]
            cases.append(Case(n, auction.quantity, counts, tallies))
            del calls, clearing, auction
    return cases


def report(cases: list[Case], options: Options, load_at_start: float) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    out.print()
    out.print(
        f"[bold]{TITLE}[/] in memory: {', '.join(f'{n:,}' for n in SIZES)} bids, "
        f"{options.rounds} interleaved rounds; Python {platform.python_version()} "
        f"({platform.python_implementation()}), {os.cpu_count()} CPUs, load average "
        f"{load_at_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; peak resident "
        f"memory {harness.mib(peak)}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title=TITLE, title_justify="left", caption_justify="left")
    for name in (
        "bids",
        "clear s",
        "sort s",
        "clear/sort",
        "clear+list s",
        "clear+list/sort",
        "best clear s",
        "spread",
        "winners",
    ):
        table.add_column(name, justify="left" if name == "bids" else "right")
    for case in cases:
        per = {side: t.seconds / t.count for side, t in case.tallies.items()}
        best = 1 / max(case.tallies["clear"].chunks)
        spread = max(t.spread for t in case.tallies.values())
        table.add_row(
            f"{case.bids:,}",
            f"{per['clear']:.3f}",
            f"{per['sort']:.3f}",
            f"{per['clear'] / per['sort']:.2f}x",
            f"{per['clear+list']:.3f}",
            f"{per['clear+list'] / per['sort']:.2f}x",
            f"{best:.3f}",
            f"±{spread / 2:.0%}",
            f"{case.counts['won'] + case.counts['partially_won']:,}",
        )
    table.caption = (
        "Seconds per call, mean over the rounds. clear = clear() with validation, outcomes "
        "returned compact; sort = sorted(bids, key=ranking_key); clear+list = list(clear()), "
        "every outcome made as a BidOutcome. clear/sort, clear+list/sort = side s ÷ sort s "
        "(lower is better). Spread = half the range of the per-round rates, worst side. "
        "Winners = won or partially won; each auction offers a third of the quantity asked for."
    )
    out.print(table)
    target = next(c for c in cases if c.bids == TARGET_BIDS)
    seconds = target.tallies["clear"].seconds / target.tallies["clear"].count
    sort = target.tallies["sort"].seconds / target.tallies["sort"].count
    verdict = "meets" if seconds <= TARGET_SECONDS else "MISSES"
    out.print(
        f"clearing: {TARGET_BIDS:,} bids in {seconds:.3f} s ({verdict} the target of "
        f"{TARGET_SECONDS:.0f} s), {seconds / sort:.2f}x a plain sort of the same bids "
        f"({sort:.3f} s); {target.counts['allocated']:,} of {target.quantity:,} units "
        "allocated",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        "clearing with results written to the database (target ≥ 5,000 allocations/s): "
        "measured by `python -m bench trading`",
        highlight=False,
        soft_wrap=True,
    )


def run(options: Options) -> None:
    load_at_start = os.getloadavg()[0]
    err.print(f"{TITLE}: in memory, no PostgreSQL needed")
    report(measure(options), options, load_at_start)
