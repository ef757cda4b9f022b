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
    the loop goes on: the outbox keeps the work until it succeeds. The two fail apart: a
    housekeeping that fails (an API key without the right to put index templates, say) is
    retried every MAX_PAUSE_S while the outbox goes on draining (writes need the alias, so
    none can create an index of their own)."""
    stop = stop or asyncio.Event()
    next_sweep = 0.0
    housekeeping_failed = False
    failures = 0  # consecutive cycles in which the backend could not be reached
    while not stop.is_set():
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + SWEEP_EVERY_S
            try:
                await service.ensure_index(sessionmaker, search)
                async with sessionmaker() as session, session.begin():
                    await service.sweep(await session.connection())
                if housekeeping_failed:
                    log.info("search housekeeping works again")
                housekeeping_failed = False
            except asyncio.CancelledError:
                raise
            except Exception:
                if not housekeeping_failed:  # once per streak, not every retry
                    log.exception(
                        "search housekeeping (index check, sweep) failed; the outbox still "
                        "drains; retrying"
                    )
                housekeeping_failed = True
                next_sweep = time.monotonic() + MAX_PAUSE_S
        try:
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
        # wait longer while the backend is unreachable, at most MAX_PAUSE_S
        pause = min(interval * 2 ** min(failures, 10), max(interval, MAX_PAUSE_S))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=pause)
