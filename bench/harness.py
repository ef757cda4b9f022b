"""What every benchmark needs: a PostgreSQL server, a fresh migrated database, timing, output.

The server is the one tests use (tests/conftest.py): MARKET_BENCH_DATABASE_URL when set,
else embedded PostgreSQL in a temporary directory that is stopped and removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.engine import make_url

from market import migrate
from market.db import EmbeddedPostgres, async_url, plain_url, start_embedded

ENV_URL = "MARKET_BENCH_DATABASE_URL"

# results on stdout, progress and notes on stderr (wide when not a terminal, for CI logs)
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


@dataclass(frozen=True)
class Options:
    requests: int = 2000
    users: int = 200
    rounds: int = 4
    show_sql: bool = False
    lots: int = 10_000  # shares, listing-read: the generated data set
    records: int = 1_000_000
    duration: float = 5.0  # listing-read: seconds of load per side and round
    connections: int = 32  # listing-read: concurrent connections of the load generator
    listings: int = 100_000  # search: generated listing documents (targets: 1,000,000)
    buyers: int = 50  # trading: concurrent buyers (and listings of the spread side)
    bids: tuple[int, ...] = (1000, 5000, 20000)  # trading: sealed bids per auction cleared
    statement_lines: int = 100_000  # statement: lines per imported bank statement
    payments: int = 1000  # statement: pending bank-transfer payments the lines pay


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class Server:
    """A PostgreSQL server: its admin URL and, when embedded, the handle that stops it."""

    url: str
    embedded: EmbeddedPostgres | None = None

    def describe(self) -> str:
        if self.embedded is not None:
            return f"embedded PostgreSQL in {self.embedded.pgdata}"
        return f"{ENV_URL}: {make_url(self.url).render_as_string(hide_password=True)}"

    def rss_bytes(self) -> tuple[int, int] | None:
        """Resident memory of the embedded server (postmaster and backends) and process count.

        Shared buffers count once per process that touched them, so this overstates the total;
        None for an external server, which may not even run on this machine.
        """
        if self.embedded is None:
            return None
        pid = self.embedded.server.get_pid()
        if pid is None:
            return None
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
            return sum(p.memory_info().rss for p in processes), len(processes)
        except psutil.Error:
            return None


def _interrupt(signum: int, frame: object) -> None:
    """Raise in the main thread wherever it is, so that the `finally` blocks stop PostgreSQL.

    asyncio.run's own Ctrl-C handling only cancels the running task, which does not reach code
    that runs outside it (starting the server, the migrations' own event loop).
    """
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@contextmanager
def postgres_server() -> Iterator[Server]:
    """MARKET_BENCH_DATABASE_URL, or embedded PostgreSQL in a temporary directory.

    The embedded server is stopped and its directory removed however the run ends
    (normal exit, exception, Ctrl-C or SIGTERM).
    """
    signals = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored
        signals.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, _interrupt) for sig in signals}
    try:
        external = os.environ.get(ENV_URL)
        if external:
            yield Server(url=async_url(external))
            return
        tmp = Path(tempfile.mkdtemp(prefix="agribridge-bench-"))
        try:
            try:
                with err.status("Starting embedded PostgreSQL"):
                    embedded = start_embedded(tmp / "pgdata")
            except BaseException:
                _stop_leftover(tmp / "pgdata")  # interrupted after the server started
                raise
            try:
                yield Server(url=async_url(embedded.url("postgres")), embedded=embedded)
            finally:
                for sig in previous:  # a second Ctrl-C must not leave the server running
                    signal.signal(sig, signal.SIG_IGN)
                with err.status("Stopping embedded PostgreSQL"):
                    embedded.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_leftover(pgdata: Path) -> None:
    """Fast-shutdown a server that started in `pgdata` but was never handed to us."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        process = psutil.Process(pid)
        if process.name() not in ("postgres", "postmaster"):
            return
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        process.wait(timeout=15)
    except (OSError, ValueError, IndexError, psutil.Error):
        return


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_database(server: Server) -> Iterator[str]:
    """A new database migrated to head, dropped at the end; yields its (asyncpg) URL."""
    name = f"agribridge_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(
        _admin(server.url, f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    )
    try:
        url = _with_database(server.url, name)
        with err.status("Migrating the benchmark database"):
            migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(server.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def server_version(url: str) -> str:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def process_rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB"


# ---------------------------------------------------------------- timing and output


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


@dataclass
class Tally:
    """Operations done and time spent, summed over the interleaved rounds."""

    count: int = 0
    seconds: float = 0.0
    chunks: list[float] = field(default_factory=list)

    def add(self, count: int, seconds: float) -> None:
        self.count += count
        self.seconds += seconds
        self.chunks.append(count / seconds if seconds > 0 else 0.0)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def spread(self) -> float:
        """Relative spread of the per-round rates (max-min)/mean: how noisy the run was."""
        if len(self.chunks) < 2:
            return 0.0
        mean = sum(self.chunks) / len(self.chunks)
        return (max(self.chunks) - min(self.chunks)) / mean if mean else 0.0


def now() -> float:
    return time.perf_counter()


def split(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal positive chunks (fewer when total < parts)."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass
class Row:
    """One case: the measured side and its baselines (None where a baseline does not apply)."""

    case: str
    measured: Tally
    baselines: list[Tally | None]


def ratio_table(title: str, measured: str, baselines: list[str], rows: list[Row]) -> Table:
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.add_column("case")
    table.add_column(f"{measured} req/s", justify="right")
    for name in baselines:
        table.add_column(f"{name} /s", justify="right")
        table.add_column(f"{measured}/{name}", justify="right")
    table.add_column("spread", justify="right")
    for row in rows:
        cells = [row.case, f"{row.measured.rate:,.0f}"]
        spreads = [row.measured.spread]
        for baseline in row.baselines:
            if baseline is None or not baseline.rate:
                cells += ["-", "-"]
                continue
            cells += [f"{baseline.rate:,.0f}", f"{row.measured.rate / baseline.rate:.2f}x"]
            spreads.append(baseline.spread)
        cells.append(f"±{max(spreads) / 2:.0%}")
        table.add_row(*cells)
    return table
