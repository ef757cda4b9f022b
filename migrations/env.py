"""Alembic environment: an async engine on the URL from market.migrate or MARKET_DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import market.models  # noqa: F401  (registers every table on Base.metadata)
from market.db import Base, async_url
from search.postgres import metadata as search_metadata

config = context.config
# the search backend's tables live on its own metadata: search never imports market
target_metadata = [Base.metadata, search_metadata]


def database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from market.config import get_settings

    settings = get_settings()
    if not settings.database_url:
        raise SystemExit(
            "set MARKET_DATABASE_URL, or use `market db upgrade` (embedded PostgreSQL)"
        )
    return async_url(settings.database_url)


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
