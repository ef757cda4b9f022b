"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from market.listing_search import service as listing_search_service

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Alive")
async def healthz() -> dict[str, str]:
    """The process answers; says nothing about its dependencies."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready: database reachable; search and payment providers' state, sync backlog",
    description="503 when the database cannot be reached. A search backend or a payment "
    "provider that is down makes the answer `degraded`, not unready: writes still succeed, "
    "the search outbox keeps the changes until it returns (`search.backlog`), and bank "
    "transfers go on while Stripe is away.",
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state

    async def database() -> dict[str, object]:
        try:
            async with state.sessionmaker() as session:
                conn = await session.connection()
                backlog = await asyncio.wait_for(listing_search_service.backlog(conn), timeout=3)
            return {"ok": True, "backlog": backlog}
        except Exception as exc:
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}

    db, search, *providers = await asyncio.gather(
        database(), state.search.health(), *(p.health() for p in state.payments.values())
    )
    backlog = db.pop("backlog", None)
    checks: dict[str, dict[str, object]] = {
        "database": db,
        "search": {"ok": search.ok, "backend": search.backend, "detail": search.detail},
        "payments": {
            "ok": all(p.ok for p in providers),
            "provider": ", ".join(p.provider for p in providers),
            "detail": "; ".join(p.detail for p in providers if p.detail),
        },
    }
    if isinstance(backlog, listing_search_service.Backlog):
        checks["search"]["backlog"] = {
            "pending": backlog.pending,
            "parked": backlog.parked,
            "oldest_seconds": backlog.oldest_seconds,
        }
    # a payment provider or search being down degrades the service (bank transfers and
    # writes go on); only the database makes it not ready
    ready = bool(db["ok"])
    healthy = search.ok and all(p.ok for p in providers)
    status = "not_ready" if not ready else "ready" if healthy else "degraded"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Metrics in the Prometheus text format",
    response_class=PlainTextResponse,
)
async def metrics(request: Request) -> PlainTextResponse:
    """The search sync's backlog (outbox rows waiting, parked, age of the oldest)."""
    async with request.app.state.sessionmaker() as session:
        backlog = await listing_search_service.backlog(await session.connection())
    lines = [
        "# HELP agribridge_search_outbox_pending Listing changes waiting for the search index.",
        "# TYPE agribridge_search_outbox_pending gauge",
        f"agribridge_search_outbox_pending {backlog.pending}",
        "# HELP agribridge_search_outbox_parked Listing changes the search index refused.",
        "# TYPE agribridge_search_outbox_parked gauge",
        f"agribridge_search_outbox_parked {backlog.parked}",
        "# HELP agribridge_search_outbox_oldest_seconds Age of the oldest waiting change.",
        "# TYPE agribridge_search_outbox_oldest_seconds gauge",
        f"agribridge_search_outbox_oldest_seconds {backlog.oldest_seconds or 0:.3f}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
