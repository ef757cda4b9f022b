"""Test fixtures: a real PostgreSQL migrated once per run, a rolled-back transaction per test.

PostgreSQL is embedded (started in a temporary directory) unless MARKET_TEST_DATABASE_URL
names a server; either way a fresh database is created for the run and dropped after it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from market import migrate
from market.app import create_app
from market.config import Settings
from market.db import async_url, create_engine, create_sessionmaker, plain_url, start_embedded
from payments.offline import BankAccount, OfflineBankTransfer
from search.postgres import PostgresSearch

# Tables that hold reference data loaded by migrations; everything else is emptied after
# tests that commit.
REFERENCE_TABLES = {
    "region",
    "alembic_version",
    "product_category",
    "sourcing_chain_head",
    "registry_version",
}


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server: MARKET_TEST_DATABASE_URL, or embedded in a temporary directory."""
    external = os.environ.get("MARKET_TEST_DATABASE_URL")
    if external:
        yield async_url(external)
        return
    tmp = Path(tempfile.mkdtemp(prefix="agribridge-test-"))
    embedded = start_embedded(tmp / "pgdata")
    try:
        yield async_url(embedded.url("postgres"))
    finally:
        embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # about 55 MB a run otherwise


@pytest.fixture(scope="session")
def db_url(server_url: str) -> Iterator[str]:
    """A fresh database for this run, migrated to head once."""
    name = f"agribridge_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(plain_url(server_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"))
    url = _with_database(server_url, name)
    migrate.upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    data_dir = Path(tempfile.mkdtemp(prefix="agribridge-data-"))
    yield Settings(
        database_url=None,
        data_dir=data_dir,
        log_json=False,
        secret_key="test-secret-key-for-id-number-hashes",
        max_body_bytes=64 * 1024,
        worker=False,  # tests run the background jobs themselves
    )
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection in an outer transaction that is rolled back after the test."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        try:
            yield conn
        finally:
            await outer.rollback()


def _rolled_back_maker(conn: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=conn,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session inside the test's transaction, for factories and for checking rows."""
    async with _rolled_back_maker(connection)() as s:
        yield s


def build_app(  # type: ignore[no-untyped-def]
    settings: Settings,
    maker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connection: AsyncConnection | None = None,
):
    app = create_app(settings, sessionmaker=maker)
    # searches see the test's rolled-back transaction when given its connection
    app.state.search = PostgresSearch(engine, connection=connection)
    app.state.payments = {
        "offline": OfflineBankTransfer(BankAccount("测试账户", "6222", "测试银行"))
    }
    return app


@pytest.fixture
async def client(
    connection: AsyncConnection, settings: Settings, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """The app driven through httpx, every request inside the test's rolled-back transaction."""
    app = build_app(settings, _rolled_back_maker(connection), engine, connection)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        tables = (
            await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        ).scalars()
        names = [t for t in tables if t not in REFERENCE_TABLES]
        # the append-only ledger refuses TRUNCATE; replica mode skips triggers for cleanup
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        if names:
            quoted = ", ".join(f'"{name}"' for name in names)  # "order" is a keyword
            await conn.execute(text(f"TRUNCATE {quoted} CASCADE"))
        await conn.execute(text("UPDATE region SET is_poverty_county = false"))
        await conn.execute(
            text(
                "UPDATE sourcing_chain_head SET last_seq = 0, "
                "last_hash = decode(repeat('00', 32), 'hex')"
            )
        )


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> AsyncIterator[None]:
    """For tests that commit: empty the database (reference data kept) afterwards."""
    try:
        yield
    finally:
        await _truncate(engine)


@pytest.fixture
async def committing_client(
    settings: Settings, engine: AsyncEngine, clean_db: None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the real engine: each request commits, requests run truly concurrently."""
    app = build_app(settings, create_sessionmaker(engine), engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def committing_session(engine: AsyncEngine, clean_db: None) -> AsyncIterator[AsyncSession]:
    """A session on the real engine whose commits are real."""
    async with create_sessionmaker(engine)() as s:
        yield s
