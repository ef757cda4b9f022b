"""Every domain router, in the order the OpenAPI docs show them."""

from __future__ import annotations

from fastapi import FastAPI

from market import health
from market.accounts.router import router as accounts_router
from market.organisations.router import router as organisations_router
from market.regions.router import router as regions_router

TAGS = [
    {"name": "accounts", "description": "Register, sign in (OAuth2 password flow), sign out."},
    {"name": "organisations", "description": "Cooperatives, buyers, organisers, authorities."},
    {"name": "members", "description": "Members with roles owner, staff, viewer; invitations."},
    {"name": "api keys", "description": "Scoped keys for integrations, shown once."},
    {"name": "regions", "description": "China's provinces, cities and counties (GB/T 2260)."},
    {"name": "platform", "description": "Verification and scoping, for platform operators."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(accounts_router)
    app.include_router(organisations_router)
    app.include_router(regions_router)
