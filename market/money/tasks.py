"""Money in the background: webhook events, captures on shipment, voids of dead orders,
refunds owed and their execution, settlement after delivery, reconciliation with the
provider. Each step runs in its own transaction and claims its rows with SKIP LOCKED, so
any number of workers may run it at once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from market.config import Settings
from market.money import service
from market.money.service import Providers

log = logging.getLogger("market.money")


@dataclass(frozen=True)
class Timing:
    settlement_hold: dt.timedelta
    capture_within: dt.timedelta
    reconcile_after: dt.timedelta


def timing(settings: Settings) -> Timing:
    return Timing(
        settlement_hold=dt.timedelta(days=settings.settlement_hold_days),
        capture_within=dt.timedelta(days=settings.card_capture_within_days),
        reconcile_after=dt.timedelta(minutes=settings.payment_reconcile_minutes),
    )


async def run_once(
    sessionmaker: async_sessionmaker[AsyncSession], providers: Providers, when: Timing
) -> dict[str, int]:
    """One round of every step; what each did, by name."""
    steps = {
        "events": lambda s: service.handle_events(s, providers),
        "captured": lambda s: service.capture_due(s, providers, capture_within=when.capture_within),
        "voided": lambda s: service.void_dead(s, providers),
        "refunds_owed": service.derive_refunds,
        "refunds_sent": lambda s: service.execute_refunds(s, providers),
        "settled": lambda s: service.settle_due(s, hold=when.settlement_hold),
        "reconciled": lambda s: service.reconcile_stale(
            s, providers, older_than=when.reconcile_after
        ),
    }
    done: dict[str, int] = {}
    for name, step in steps.items():
        try:
            async with sessionmaker() as session, session.begin():
                done[name] = await step(session)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("money step %s failed; it runs again next round", name)
            done[name] = 0
    return done


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: Providers,
    when: Timing,
    *,
    interval: float = 5.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Every `interval` seconds until `stop` is set."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        done = await run_once(sessionmaker, providers, when)
        if any(done.values()):
            log.info("money: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
