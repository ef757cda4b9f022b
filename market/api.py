"""Every domain router, in the order the OpenAPI docs show them."""

from __future__ import annotations

from fastapi import FastAPI

from market import health
from market.accounts.router import router as accounts_router
from market.catalog.router import router as catalog_router
from market.households.router import router as households_router
from market.listing_search.router import router as search_router
from market.listings.router import router as listings_router
from market.logistics.router import router as logistics_router
from market.money.router import router as money_router
from market.notifications.router import router as notifications_router
from market.orders.router import router as orders_router
from market.organisations.router import router as organisations_router
from market.regions.router import router as regions_router
from market.sourcing.router import router as sourcing_router
from market.trading.router import router as trading_router

TAGS = [
    {"name": "accounts", "description": "Register, sign in (OAuth2 password flow), sign out."},
    {"name": "organisations", "description": "Cooperatives, buyers, organisers, authorities."},
    {"name": "members", "description": "Members with roles owner, staff, viewer; invitations."},
    {"name": "api keys", "description": "Scoped keys for integrations, shown once."},
    {"name": "regions", "description": "China's provinces, cities and counties (GB/T 2260)."},
    {"name": "households", "description": "Poor-household registry, members, logged reveals."},
    {"name": "catalog", "description": "Product categories, cooperatives' products, certificates."},
    {"name": "sourcing", "description": "Lots, the hash-chained sourcing ledger, shares."},
    {"name": "public", "description": "Pages and data anyone may read."},
    {"name": "listings", "description": "Listings from lots, their stock ledger; public reads."},
    {"name": "search", "description": "Find listings: Chinese, pinyin, English; facets; distance."},
    {"name": "trading", "description": "Bids and counter-offers; sealed-bid auctions."},
    {"name": "orders", "description": "Buyers' orders; cooperatives' fulfilments and shipments."},
    {"name": "notifications", "description": "Each organisation's feed of events; e-mails."},
    {"name": "logistics", "description": "Freight, transit time and freshness estimates."},
    {"name": "platform", "description": "Verification and scoping, for platform operators."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(accounts_router)
    app.include_router(organisations_router)
    app.include_router(regions_router)
    app.include_router(households_router)
    app.include_router(sourcing_router)
    app.include_router(catalog_router)
    app.include_router(listings_router)
    app.include_router(search_router)
    app.include_router(logistics_router)
    app.include_router(trading_router)
    app.include_router(orders_router)
    app.include_router(notifications_router)
    app.include_router(money_router)
