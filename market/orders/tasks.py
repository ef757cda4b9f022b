"""Order housekeeping in the background: unpaid orders expire, silent deliveries confirm."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from market.orders import service

log = logging.getLogger("market.orders")


async def run_once(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """(orders expired, deliveries confirmed), each batch in its own transaction."""
    async with sessionmaker() as session, session.begin():
        expired = await service.expire_unpaid(session)
    async with sessionmaker() as session, session.begin():
        confirmed = await service.auto_confirm(session)
    return expired, confirmed


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    interval: float = 10.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Every `interval` seconds until `stop` is set; errors are logged and retried."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            expired, confirmed = await run_once(sessionmaker)
            if expired or confirmed:
                log.info("orders: %d expired unpaid, %d deliveries confirmed", expired, confirmed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("order housekeeping failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
