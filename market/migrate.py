"""Alembic, driven from code: upgrade, downgrade, current, and the start-up check."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from market.db import async_url
from market.errors import StartupError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s",
    )
    config.attributes["database_url"] = async_url(url)
    return config


def head() -> str:
    heads = ScriptDirectory.from_config(alembic_config("postgresql://x@localhost/x")).get_heads()
    return heads[0]


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(url), revision)


async def current(url: str) -> str | None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def require_current(url: str) -> None:
    """Refuse to serve a database that is behind (or ahead of) this code's migrations."""
    now, expected = await current(url), head()
    if now != expected:
        raise StartupError(
            f"the database schema is at revision {now or 'none (empty database)'} but this "
            f"version needs {expected}: run `market db upgrade`"
        )


def upgrade_in_thread(url: str, revision: str = "head") -> asyncio.Future[None]:
    """For callers inside an event loop: alembic's env.py runs its own loop."""
    return asyncio.ensure_future(asyncio.to_thread(upgrade, url, revision))
