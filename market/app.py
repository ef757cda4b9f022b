"""create_app(settings) and the lifespan that builds the engine, search and payments."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from market import __version__
from market.api import TAGS, include_routers
from market.config import PaymentProvider, SearchBackend, Settings
from market.db import create_engine, create_sessionmaker
from market.errors import StartupError, install_error_handlers
from market.listing_search import router as listing_search_router
from market.listing_search import service as listing_search_service
from market.listing_search import tasks as search_tasks
from market.listings.router import create_read_pool, install_fast_routes
from market.money import tasks as money_tasks
from market.notifications import tasks as notifications_tasks
from market.notifications.service import LogTransport
from market.observability import BodyLimitMiddleware, RequestContextMiddleware
from market.orders import tasks as orders_tasks
from market.orders.service import order_terms
from market.trading import tasks as trading_tasks
from payments.base import PaymentProvider as PaymentProviderProtocol
from search import analysis
from search.base import ListingSearch

DESCRIPTION = """
**AgriBridge (农商桥)** connects rural cooperatives in poverty-stricken counties with wholesale
buyers in distant cities, and lets officials audit how much of every lot and gift package was
sourced from registered poor households.

* Sign in with `POST /auth/token` (OAuth2 password flow), then send `Authorization: Bearer …`;
  integrations use organisation API keys (`agk_…`) the same way.
* Errors are RFC 9457 `application/problem+json` with a stable `code` and per-field `errors`.
* Lists use cursor pagination: `limit` (1–100, default 20) and `cursor` = the previous
  `next_cursor`.
* POSTs that move stock or money honour an `Idempotency-Key` header.
* Money is integer fen (1 yuan = 100 fen).
"""


def build_search(settings: Settings, engine: Any, reader: Any = None) -> ListingSearch:
    """The configured backend; on PostgreSQL, searches read on `reader` (the app's asyncpg
    read pool) when given."""
    if settings.search_backend == SearchBackend.elasticsearch:
        if not settings.elasticsearch_url:
            raise StartupError("MARKET_SEARCH_BACKEND=elasticsearch needs MARKET_ELASTICSEARCH_URL")
        from search.elasticsearch import ElasticsearchSearch, make_client

        key = settings.elasticsearch_api_key
        client = make_client(
            settings.elasticsearch_url,
            api_key=key.get_secret_value() if key else None,
            opensearch_compat=settings.elasticsearch_opensearch_compat,
        )
        return ElasticsearchSearch(client, index_prefix=settings.elasticsearch_index_prefix)
    from search.postgres import PostgresSearch

    return PostgresSearch(engine, reader=reader)


def build_payments(settings: Settings) -> dict[str, PaymentProviderProtocol]:
    """Bank transfer is always offered; Stripe (card, Alipay, WeChat Pay) when configured."""
    from payments.offline import BankAccount, OfflineBankTransfer

    providers: dict[str, PaymentProviderProtocol] = {
        "offline": OfflineBankTransfer(
            BankAccount(
                settings.bank_account_name, settings.bank_account_number, settings.bank_name
            )
        )
    }
    if settings.payment_provider == PaymentProvider.stripe:
        if settings.stripe_api_key is None:
            raise StartupError("MARKET_PAYMENT_PROVIDER=stripe needs MARKET_STRIPE_API_KEY")
        from payments.stripe import StripePayments

        providers["stripe"] = StripePayments(
            settings.stripe_api_key.get_secret_value(),
            webhook_secret=settings.stripe_webhook_secret.get_secret_value()
            if settings.stripe_webhook_secret
            else None,
            api_base=settings.stripe_api_base,
            method_types=tuple(settings.stripe_method_types),
            localstripe_compat=settings.stripe_localstripe_compat,
        )
    return providers


def freeze_startup_objects() -> None:
    """Put what start-up made (modules, ORM mappers, compiled statements and templates, and
    the search analysis' dictionaries, loaded here rather than by the first search) beyond
    the garbage collector: it lives as long as the process, and otherwise every full
    collection walks all of it again. A job that allocates many objects (the clearing of an
    auction of thousands of bids) triggers several of those and spent about a fifth of its
    time in them (measured with `python -m bench trading`); the dictionaries alone made a
    full collection ~18 ms, a pause for every request in flight."""
    analysis.load()
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings,
    *,
    database_url: str | None = None,
    sessionmaker: Any = None,
    check_migrations: bool = True,
) -> FastAPI:
    """The ASGI app. Tests pass their own `sessionmaker` (bound to a rolled-back transaction)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        url: str | None = None
        workers: list[asyncio.Task[None]] = []
        stop: asyncio.Event | None = None
        if app.state.sessionmaker is None:
            url = database_url or settings.database_url
            if not url:
                raise StartupError("no database URL: start the app with `market serve`")
            if check_migrations:
                from market import migrate

                await migrate.require_current(url)
            engine = create_engine(url, pool_size=settings.database_pool_size)
            app.state.sessionmaker = create_sessionmaker(engine)
        try:
            if url is not None:
                # the hot public read runs on asyncpg directly (market.listings.router)
                app.state.read_pool = await create_read_pool(url, settings.database_pool_size)
            if app.state.search is None:
                app.state.search = build_search(
                    settings, engine or app.state.sessionmaker.kw["bind"], app.state.read_pool
                )
            if app.state.payments is None:
                app.state.payments = build_payments(settings)
            if settings.worker:
                stop = asyncio.Event()
                workers = [
                    asyncio.create_task(
                        search_tasks.run(
                            app.state.sessionmaker,
                            app.state.search,
                            interval=settings.search_worker_interval_s,
                            stop=stop,
                        ),
                        name="search-sync",
                    ),
                    asyncio.create_task(
                        orders_tasks.run(app.state.sessionmaker, stop=stop), name="orders"
                    ),
                    asyncio.create_task(
                        trading_tasks.run(app.state.sessionmaker, order_terms(settings), stop=stop),
                        name="trading",
                    ),
                    asyncio.create_task(
                        notifications_tasks.run(app.state.sessionmaker, LogTransport(), stop=stop),
                        name="e-mail",
                    ),
                    asyncio.create_task(
                        money_tasks.run(
                            app.state.sessionmaker,
                            app.state.payments,
                            money_tasks.timing(settings),
                            stop=stop,
                        ),
                        name="money",
                    ),
                ]
            freeze_startup_objects()
            yield
        finally:
            if stop is not None:
                stop.set()
                # the loops finish their current step; one stuck on a dead peer is cancelled,
                # and the rest of the shutdown goes on either way (the outboxes keep the work)
                _, stuck = await asyncio.wait(workers, timeout=10)
                for task in stuck:
                    task.cancel()
            if app.state.search is not None:
                await app.state.search.close()
            for provider in (app.state.payments or {}).values():
                await provider.close()
            if app.state.read_pool is not None:
                await app.state.read_pool.close()
                app.state.read_pool = None
            if engine is not None:
                await engine.dispose()

    app = FastAPI(
        title="AgriBridge 农商桥",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        license_info={"name": "Apache-2.0"},
    )
    app.state.settings = settings
    app.state.sessionmaker = sessionmaker
    app.state.search = None
    app.state.payments = None
    app.state.before_commit = listing_search_service.index_own_changes
    app.state.read_pool = None
    app.state.search_reference = None  # category and region names, read on first search
    install_error_handlers(app)
    include_routers(app)
    install_fast_routes(app)
    listing_search_router.install_fast_routes(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        larger={"/platform/statements": settings.max_statement_bytes},
    )
    app.add_middleware(RequestContextMiddleware)
    return app
