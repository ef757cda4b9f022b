"""Rendering notifications into the e-mail outbox and sending it, in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from market.notifications import service

log = logging.getLogger("market.email")


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    transport: service.EmailTransport,
    *,
    interval: float = 5.0,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            while True:
                async with sessionmaker() as session, session.begin():
                    written = await service.write_emails(session)
                if written == 0:
                    break
            while True:
                async with sessionmaker() as session, session.begin():
                    sent = await service.send_pending(session, transport)
                if sent == 0:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sending e-mails failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
