"""Trading in the background: negotiation bids expire, closed auctions are cleared."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from market.orders.service import Terms
from market.trading import service

log = logging.getLogger("market.trading")


async def run_once(sessionmaker: async_sessionmaker[AsyncSession], terms: Terms) -> tuple[int, int]:
    """(bids expired, auctions cleared); each auction in its own transaction, so that one
    that fails does not hold the others back."""
    async with sessionmaker() as session, session.begin():
        expired = await service.expire_bids(session)
    async with sessionmaker() as session:
        due = await service.due_auctions(session)
    cleared = 0
    for listing_id in due:
        try:
            async with sessionmaker() as session, session.begin():
                if await service.clear_auction(session, listing_id=listing_id, terms=terms):
                    cleared += 1
        except Exception:
            log.exception("clearing auction %s failed; retrying next cycle", listing_id)
    return expired, cleared


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    terms: Terms,
    *,
    interval: float = 5.0,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            expired, cleared = await run_once(sessionmaker, terms)
            if expired or cleared:
                log.info("trading: %d bids expired, %d auctions cleared", expired, cleared)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("trading housekeeping failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
