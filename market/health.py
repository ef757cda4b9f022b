"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Alive")
async def healthz() -> dict[str, str]:
    """The process answers; says nothing about its dependencies."""
    return {"status": "ok"}


@router.get("/readyz", summary="Ready: database, search and payments reachable")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state

    async def database() -> dict[str, object]:
        try:
            async with state.sessionmaker() as session:
                await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=3)
            return {"ok": True}
        except Exception as exc:
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}

    db, search, payments = await asyncio.gather(
        database(), state.search.health(), state.payments.health()
    )
    checks = {
        "database": db,
        "search": {"ok": search.ok, "backend": search.backend, "detail": search.detail},
        "payments": {"ok": payments.ok, "provider": payments.provider, "detail": payments.detail},
    }
    ready = all(bool(c["ok"]) for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
