"""Migrations: upgrade an empty database to head, step down and up again, and the models
match the migrated schema (no drift)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

import market.models  # noqa: F401
from market import migrate
from market.db import Base, plain_url
from search import postgres as search_postgres


@pytest.fixture
def empty_db(server_url: str) -> Iterator[str]:
    name = f"agribridge_mig_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(plain_url(server_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def _count(url: str, table: str) -> int:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def test_upgrade_from_empty_then_down_a_step_and_up(empty_db):
    assert await migrate.current(empty_db) is None
    with pytest.raises(Exception, match="market db upgrade"):
        await migrate.require_current(empty_db)

    await asyncio.to_thread(migrate.upgrade, empty_db)
    assert await migrate.current(empty_db) == migrate.head()
    await migrate.require_current(empty_db)
    assert {"user_account", "organisation", "membership", "region"} <= await _tables(empty_db)
    assert await _count(empty_db, "region") > 3000

    await asyncio.to_thread(migrate.downgrade, empty_db, "-1")
    previous = ScriptDirectory.from_config(migrate.alembic_config(empty_db)).get_revision(
        migrate.head()
    )
    assert await migrate.current(empty_db) == previous.down_revision

    await asyncio.to_thread(migrate.downgrade, empty_db, "0001")
    assert await _count(empty_db, "region") == 0

    await asyncio.to_thread(migrate.downgrade, empty_db, "base")
    assert "organisation" not in await _tables(empty_db)

    await asyncio.to_thread(migrate.upgrade, empty_db)
    assert await migrate.current(empty_db) == migrate.head()


def _diff(sync, metadata, include):  # type: ignore[no-untyped-def]
    context = MigrationContext.configure(
        sync,
        opts={
            "compare_type": True,
            "include_name": lambda name, type_, parent: type_ != "table" or include(name),
        },
    )
    return compare_metadata(context, metadata)


async def test_models_match_the_migrated_schema(db_url):
    # the search backend's tables belong to search's own metadata (search never imports market)
    search_tables = set(search_postgres.metadata.tables)
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: _diff(sync, Base.metadata, lambda name: name not in search_tables)
            )
            search_diff = await conn.run_sync(
                lambda sync: _diff(
                    sync, search_postgres.metadata, lambda name: name in search_tables
                )
            )
    finally:
        await engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
    assert search_diff == [], f"search tables and migrations differ: {search_diff}"


async def test_stepping_down_from_bank_refunds_drops_what_the_old_schema_cannot_hold(empty_db):
    """Revision 0019 adds the `refund_bounced` notification kind: going back a step removes
    such notifications instead of failing on the older check constraint."""
    await asyncio.to_thread(migrate.upgrade, empty_db, "0019")
    conn = await asyncpg.connect(plain_url(empty_db))
    try:
        await conn.execute("SET session_replication_role = replica")  # no parent rows needed
        await conn.execute(
            "INSERT INTO notification (organisation_id, kind, title, body, subject_type, "
            "subject_id) VALUES (gen_random_uuid(), 'refund_bounced', '退款被退回', '…', "
            "'order', gen_random_uuid())"
        )
    finally:
        await conn.close()
    await asyncio.to_thread(migrate.downgrade, empty_db, "0018")
    assert await migrate.current(empty_db) == "0018"
    assert await _count(empty_db, "notification") == 0
