"""The search-sync worker loop: inside the server by default, or `market worker` processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from market.listing_search import service
from search.base import ListingSearch

log = logging.getLogger("market.search")

SWEEP_EVERY_S = 60.0
MAX_PAUSE_S = 10.0


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    search: ListingSearch,
    *,
    interval: float = 1.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Drain the outbox every `interval` seconds until `stop` is set; every minute, sweep
    for changes that come with time and make sure the index exists. Any error is logged and
    the loop goes on: the outbox keeps the work until it succeeds."""
    stop = stop or asyncio.Event()
    next_sweep = 0.0
    failures = 0  # consecutive cycles in which the backend could not be reached
    while not stop.is_set():
        try:
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_EVERY_S
                await service.ensure_index(sessionmaker, search)
                async with sessionmaker() as session, session.begin():
                    await service.sweep(await session.connection())
            drained = await service.drain(sessionmaker, search)
            if drained.error and not failures:
                log.warning(
                    "search backend unreachable, changes wait in the outbox: %s", drained.error
                )
            elif failures and not drained.error:
                log.info("search backend reachable again")
            failures = failures + 1 if drained.error else 0
        except asyncio.CancelledError:
            raise
        except Exception:
            if not failures:  # once per outage, not every cycle
                log.exception("search sync failed; retrying")
            failures += 1
            next_sweep = 0.0
        # wait longer while the backend is unreachable, at most MAX_PAUSE_S
        pause = min(interval * 2 ** min(failures, 10), max(interval, MAX_PAUSE_S))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=pause)
