"""The public hot read path: `GET /listings/{id}` through the real HTTP API against the same
query served by a bare Starlette endpoint on raw asyncpg, both under load.

* app  -- `market serve` in its own process (uvicorn, one process, MARKET_LOG_LEVEL=WARNING)
          on the benchmark database, on 127.0.0.1 and a free port;
* bare -- bench/listing_bare.py in its own process under uvicorn configured the same way: one
          Starlette route, an asyncpg pool as large as the app's engine, the statement the app
          sends (recorded from the app before the run), the same JSON document built by hand.

The data set is bench/generate.py's (--lots, --records) plus a few active listings inserted
directly (quantities that satisfy the stock CHECKs, a price tier, a valid certificate, status
active, published now); one of them is read over and over. Before timing, the app's statements
for the request are recorded in-process and must be one statement, which the bare server then
runs verbatim; both servers must answer the same JSON body.

The load generator is `wrk` when it is on PATH (one thread, --connections connections), else a
small asyncio HTTP/1.1 keep-alive client in this process; the output says which. Each side gets
--duration seconds of load per round, over --rounds interleaved rounds (rotating which goes
first), after a short warm-up. On a small machine the load generator, the server and
PostgreSQL share the cores: the ratio app/bare is the figure to read, not the absolute rate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.engine import make_url

from bench import harness
from bench.generate import Generated, Spec, describe, generate_measured, memory_line
from bench.harness import Options, Tally, err, out
from market.catalog.service import china_today
from market.config import Settings
from market.db import plain_url

TITLE = "Public listing read under load"
TARGET_RATIO = 0.5
LISTINGS = 40  # active listings created; the first is the one read
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the listings


async def create_listings(url: str, generated: Generated, count: int) -> list[uuid.UUID]:
    """`count` active listings on lots that hold stock, straight into the tables; the stock
    ledger gets the matching `list` movement. Returns their ids, the first one to be read."""
    rng = random.Random(7)
    conn = await asyncpg.connect(plain_url(url))
    try:
        lots = await conn.fetch(
            """
            SELECT l.id, l.cooperative_id, l.product_id, l.trace_code, p.unit,
                   p.box_net_weight_g, p.name_zh, p.name_en, sum(r.quantity) AS net
              FROM lot l
              JOIN product p ON p.id = l.product_id
              JOIN sourcing_record r ON r.lot_id = l.id
             WHERE l.id = ANY($1::uuid[])
             GROUP BY l.id, p.id
            HAVING sum(r.quantity) > 0
             ORDER BY count(*) DESC
            """,
            generated.lot_ids[: count * 4],
        )
        units = {"kg": 1000, "jin": 500, "piece": 1}  # catalog_service.unit_size
        certificates: dict[uuid.UUID, uuid.UUID] = {}
        ids: list[uuid.UUID] = []
        async with conn.transaction():
            for lot in lots:
                size = units.get(lot["unit"]) or int(lot["box_net_weight_g"])
                quantity = int(lot["net"]) // size // 2
                if quantity < 2:
                    continue
                product_id = lot["product_id"]
                if product_id not in certificates:
                    certificates[product_id] = await conn.fetchval(
                        "INSERT INTO certification (product_id, kind, certificate_number, "
                        "issuer, valid_until) VALUES ($1, 'green_food', $2, "
                        "'中国绿色食品发展中心', $3) RETURNING id",
                        product_id,
                        f"LB-{rng.randint(10, 99)}-{rng.randint(10**9, 10**10 - 1)}",
                        china_today() + dt.timedelta(days=365),
                    )
                listing_id = uuid.uuid4()
                price = rng.randint(15, 120) * 100
                await conn.execute(
                    """
                    INSERT INTO listing (
                        id, cooperative_id, lot_id, product_id, title_zh, title_en,
                        description, sale_mode, status, unit_price_fen, unit_size,
                        min_order_quantity, quantity_listed, quantity_available,
                        quantity_reserved, quantity_sold, delivery_terms, pickup_hub,
                        valid_from, valid_until, certification_ids, published_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 'fixed', 'active', $8, $9, 1, $10,
                            $10, 0, 0, 'pickup', $11, now() - interval '1 day',
                            now() + interval '30 days', ARRAY[$12::uuid], now())
                    """,
                    listing_id,
                    lot["cooperative_id"],
                    lot["id"],
                    product_id,
                    f"{lot['name_zh']}（批次 {lot['trace_code']}）",
                    lot["name_en"],
                    "压测数据：产地直供，合作社统一分级包装。",
                    price,
                    size,
                    quantity,
                    "白银市靖远县农产品物流园",
                    certificates[product_id],
                )
                await conn.executemany(
                    "INSERT INTO listing_price_tier (listing_id, min_quantity, unit_price_fen) "
                    "VALUES ($1, $2, $3)",
                    [(listing_id, 10, price * 95 // 100), (listing_id, 100, price * 9 // 10)],
                )
                await conn.execute(
                    "INSERT INTO stock_movement (listing_id, kind, quantity, available_after, "
                    "reason, reference) VALUES ($1, 'list', $2, $2, $3, $4)",
                    listing_id,
                    quantity,
                    f"listed from lot {lot['trace_code']}",
                    lot["trace_code"],
                )
                ids.append(listing_id)
                if len(ids) == count:
                    break
        await conn.execute("ANALYZE listing, listing_price_tier, certification, stock_movement")
    finally:
        await conn.close()
    if not ids:
        raise SystemExit("no lot holds enough stock for a listing: generate more records")
    return ids


# ---------------------------------------------------------------- the app's statement


@dataclass(frozen=True)
class Statement:
    sql: str
    params: list[str]  # positional parameters by name: "listing_id", "today"
    body: Any  # the app's document, parsed


async def record_statement(url: str, listing_id: uuid.UUID, show_sql: bool) -> Statement:
    """Run GET /listings/{id} through the app in-process and record what it sends."""
    from bench.api_overhead import AppSide

    app = AppSide(url)
    recorded: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        recorded.append((args[2], args[3]))  # (conn, cursor, statement, parameters, ...)

    event.listen(app.engine.sync_engine, "before_cursor_execute", record)
    try:
        response = await app.get(f"/listings/{listing_id}")
    finally:
        event.remove(app.engine.sync_engine, "before_cursor_execute", record)
        await app.close()
    if show_sql:
        err.rule("SQL of GET /listings/{id}")
        for sql, params in recorded:
            err.print(sql, highlight=False, markup=False)
            err.print(f"parameters: {params!r}", highlight=False, markup=False)
    if len(recorded) != 1:
        raise SystemExit(
            f"GET /listings/{{id}} sent {len(recorded)} statements; the bare baseline runs "
            "exactly one: update bench/listing_read.py and bench/listing_bare.py"
        )
    sql, params = recorded[0]
    today = china_today()
    names = []
    for value in params:
        if value == listing_id or value == str(listing_id):
            names.append("listing_id")
        elif isinstance(value, dt.date) and not isinstance(value, dt.datetime) and value == today:
            names.append("today")
        else:
            raise SystemExit(
                f"GET /listings/{{id}} binds a parameter the bare baseline does not know "
                f"({value!r}): update bench/listing_bare.py"
            )
    return Statement(sql=sql, params=names, body=response.json())


# ---------------------------------------------------------------- the servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int | None:
        try:
            return int(psutil.Process(self.process.pid).memory_info().rss)
        except psutil.Error:
            return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def serve(
    name: str, argv: list[str], env: dict[str, str], port: int, tmp: Path
) -> Iterator[Served]:
    """Start a server process, wait for /healthz, stop it (SIGTERM, then SIGKILL) at the end."""
    log = tmp / f"{name}.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            argv, env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    served = Served(name, port, process, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise SystemExit(
                    f"the {name} server exited ({process.returncode}) before it was ready:\n"
                    + _tail(log)
                )
            try:
                if httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the {name} server did not get ready in 90 s:\n" + _tail(log))
            time.sleep(0.2)
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _market_command() -> list[str]:
    script = Path(sys.executable).with_name("market")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from market.cli import main; main()"]


def _environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MARKET_DATA_DIR"] = str(tmp)
    env["MARKET_LOG_LEVEL"] = "WARNING"
    return env


# ---------------------------------------------------------------- load


@dataclass
class Load:
    requests: int
    seconds: float
    errors: int = 0
    latencies: dict[str, float] = field(default_factory=dict)  # "50%" -> seconds
    cpu: dict[str, float] = field(default_factory=dict)  # "server", "postgres", "load" -> s


# ---------------------------------------------------------------- where the CPU goes


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def backend_cpu(database: str) -> dict[int, float] | None:
    """CPU seconds so far of each PostgreSQL backend serving `database` on this machine (their
    process titles name the database); None when they cannot be seen (a remote server)."""
    found: dict[int, float] = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            if process.info["name"] not in ("postgres", "postmaster"):
                continue
            title = " ".join(process.info["cmdline"] or [])
            if f" {database} " in f" {title} ":
                found[process.pid] = _cpu(process)
        except psutil.Error:
            continue
    return found or None


@dataclass
class CpuMeter:
    """CPU seconds spent by the server process, the database's backends and the load
    generator (wrk, a reaped child; or this process) between start() and stop()."""

    server: psutil.Process
    database: str
    in_process_load: bool
    _start: tuple[float, dict[int, float] | None, float] = (0.0, None, 0.0)

    def _load(self) -> float:
        if self.in_process_load:
            return time.process_time()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return float(usage.ru_utime + usage.ru_stime)

    def start(self) -> None:
        self._start = (_cpu(self.server), backend_cpu(self.database), self._load())

    def stop(self) -> dict[str, float]:
        server, backends, load = self._start
        spent = {"server": _cpu(self.server) - server, "load": self._load() - load}
        after = backend_cpu(self.database)
        if backends is not None and after is not None:
            spent["postgres"] = sum(t - backends.get(pid, 0.0) for pid, t in after.items())
        return spent


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(text)
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(wrk: str, url: str, duration: float, connections: int) -> Load:
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    text = result.stdout
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", text)
    if total is None:
        raise SystemExit(f"cannot read wrk's output:\n{text}")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx[1])
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    latencies = {
        m[1] + "%": _seconds(m[2])
        for m in re.finditer(r"^\s+(50|90|99)(?:\.000)?%\s+([\d.]+\w+)", text, re.M)
    }
    return Load(int(total[1]), _seconds(total[2]), errors, latencies)


async def _client(
    host: str, port: int, path: str, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n".encode()
    try:
        while (start := time.perf_counter()) < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if match is None:
                raise SystemExit("the load generator needs a Content-Length in every response")
            await reader.readexactly(int(match[1]))
            latencies.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                errors[0] += 1
    finally:
        writer.close()
        await writer.wait_closed()


def run_python(url: str, duration: float, connections: int) -> Load:
    """A small asyncio HTTP/1.1 keep-alive load generator: `connections` clients in a loop."""
    parsed = httpx.URL(url)
    latencies: list[float] = []
    errors = [0]

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(
            *(
                _client(parsed.host, parsed.port or 80, parsed.raw_path.decode(), deadline,
                        latencies, errors)
                for _ in range(connections)
            )
        )  # fmt: skip
        return time.perf_counter() - start

    seconds = asyncio.run(main())
    ordered = sorted(latencies)
    percentiles = (
        {f"{p}%": ordered[min(len(ordered) - 1, len(ordered) * p // 100)] for p in (50, 90, 99)}
        if ordered
        else {}
    )
    return Load(len(latencies), seconds, errors[0], percentiles)


# ---------------------------------------------------------------- the run


def check_bodies(app: Served, bare: Served, path: str, expected: Any) -> int:
    """Both servers answer 200 with the same document (and the in-process app's); returns
    its size in bytes."""
    bodies = {}
    for served in (app, bare):
        response = httpx.get(served.base + path, timeout=10)
        if response.status_code != 200:
            raise SystemExit(
                f"GET {path} on the {served.name} server answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        bodies[served.name] = response
    app_doc, bare_doc = (orjson.loads(bodies[n].content) for n in ("app", "bare"))
    if app_doc != expected:
        raise SystemExit("the app server answers another document than the app in-process")
    if app_doc != bare_doc:
        keys = sorted(k for k in set(app_doc) | set(bare_doc) if app_doc.get(k) != bare_doc.get(k))
        raise SystemExit(
            f"the bare server's document differs from the app's in {keys}: update "
            "bench/listing_bare.py (document) to the service's public document"
        )
    return len(bodies["app"].content)


def measure(url: str, server: harness.Server, options: Options) -> None:
    spec = Spec(lots=options.lots, records=options.records)

    async def prepare() -> tuple[Generated, list[uuid.UUID], Statement]:
        with harness.progress() as bar:
            generated = await generate_measured(url, spec, bar)
        listings = await create_listings(url, generated, LISTINGS)
        statement = await record_statement(url, listings[0], options.show_sql)
        return generated, listings, statement

    generated, listings, statement = asyncio.run(prepare())
    path = f"/listings/{listings[0]}"
    wrk = shutil.which("wrk")
    generator = f"wrk (-t1 -c{options.connections})" if wrk else (
        f"the built-in asyncio HTTP/1.1 client ({options.connections} connections; wrk not "
        "found on PATH: `apt-get install wrk` for a load generator that costs less CPU)"
    )  # fmt: skip
    settings = Settings(_env_file=None)
    tmp = Path(tempfile.mkdtemp(prefix="agribridge-bench-http-"))
    try:
        env = _environment(tmp)
        app_port, bare_port = free_port(), free_port()
        app_env = env | {"MARKET_DATABASE_URL": plain_url(url)}
        bare_env = env | {
            "BENCH_DATABASE_URL": plain_url(url),
            "BENCH_LISTING_SQL": statement.sql,
            "BENCH_LISTING_PARAMS": ",".join(statement.params),
            "BENCH_POOL_SIZE": str(2 * settings.database_pool_size),  # pool + max_overflow
        }
        app_argv = [*_market_command(), "serve", "--host", "127.0.0.1", "--port", str(app_port)]
        bare_argv = [sys.executable, "-m", "bench.listing_bare", "--port", str(bare_port)]
        err.print("Starting the app (market serve) and the bare server", highlight=False)
        with (
            serve("app", app_argv, app_env, app_port, tmp) as app,
            serve("bare", bare_argv, bare_env, bare_port, tmp) as bare,
        ):
            size = check_bodies(app, bare, path, statement.body)
            err.print(f"Load generator: {generator}", highlight=False)

            database = make_url(url).database or ""

            def load(served: Served, seconds: float) -> Load:
                meter = CpuMeter(psutil.Process(served.process.pid), database, wrk is None)
                meter.start()
                if wrk:
                    result = run_wrk(wrk, served.base + path, seconds, options.connections)
                else:
                    result = run_python(served.base + path, seconds, options.connections)
                result.cpu = meter.stop()
                return result

            sides = {"app": app, "bare": bare}
            tallies = {side: Tally() for side in sides}
            loads: dict[str, list[Load]] = {side: [] for side in sides}
            with harness.progress() as bar:
                tasks = {
                    side: bar.add_task(f"GET /listings/{{id}}: {side}", total=options.rounds + 1)
                    for side in sides
                }
                for side, served in sides.items():  # warm-up: pools, statement caches
                    load(served, min(2.0, options.duration))
                    bar.update(tasks[side], advance=1)
                order = list(sides)
                for _ in range(options.rounds):
                    for side in order:
                        result = load(sides[side], options.duration)
                        tallies[side].add(result.requests, result.seconds)
                        loads[side].append(result)
                        bar.update(tasks[side], advance=1)
                    order = order[1:] + order[:1]
            check_bodies(app, bare, path, statement.body)
            rss = {side: served.rss() for side, served in sides.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    version = asyncio.run(harness.server_version(url))
    report(generated, statement, size, tallies, loads, rss, generator, options, server, version)


def _ms(load_list: list[Load], key: str) -> str:
    values = [x.latencies[key] for x in load_list if key in x.latencies]
    return f"{sorted(values)[len(values) // 2] * 1000:.1f}" if values else "-"


def report(
    generated: Generated,
    statement: Statement,
    size: int,
    tallies: dict[str, Tally],
    loads: dict[str, list[Load]],
    rss: dict[str, int | None],
    generator: str,
    options: Options,
    server: harness.Server,
    version: str,
) -> None:
    out.print()
    out.print(
        f"[bold]{TITLE}[/]: GET /listings/{{id}} of one active listing, {options.connections} "
        f"concurrent connections, {options.duration:g} s per side and round, {options.rounds} "
        f"interleaved rounds; load generator: {generator}; PostgreSQL {version} "
        f"({server.describe()}); Python {platform.python_version()}; {os.cpu_count()} CPUs "
        "shared by the load generator, both servers and PostgreSQL",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"Data: {describe(generated)}; generated in {generated.seconds:.0f} s, "
        f"{memory_line(generated)}",
        highlight=False,
        soft_wrap=True,
    )
    share = statement.body.get("poor_share_bp")
    out.print(
        f"Both servers answer the same {size:,}-byte document (poor share "
        f"{'-' if share is None else f'{share / 100:.2f}%'}, trace code "
        f"{statement.body.get('trace_code')}); the bare server runs the app's one statement "
        f"verbatim (parameters: {', '.join(statement.params)})",
        highlight=False,
        soft_wrap=True,
    )
    app_tally, bare_tally = tallies["app"], tallies["bare"]
    table = Table(title=TITLE, title_justify="left", caption_justify="left")
    for name in (
        "case",
        "app req/s",
        "bare req/s",
        "app/bare",
        "p50 ms app / bare",
        "p99 ms app / bare",
        "spread",
    ):
        table.add_column(name, justify="left" if name == "case" else "right")
    table.add_row(
        "GET /listings/{id}",
        f"{app_tally.rate:,.0f}",
        f"{bare_tally.rate:,.0f}",
        f"{app_tally.rate / bare_tally.rate:.2f}x" if bare_tally.rate else "-",
        f"{_ms(loads['app'], '50%')} / {_ms(loads['bare'], '50%')}",
        f"{_ms(loads['app'], '99%')} / {_ms(loads['bare'], '99%')}",
        f"±{max(app_tally.spread, bare_tally.spread) / 2:.0%}",
    )  # fmt: skip
    table.caption = (
        "app = `market serve` (its middleware, the plain route of the public read, the "
        "service's one statement on the app's asyncpg pool, orjson); bare = Starlette + an "
        "asyncpg pool, the same "
        "statement, the same document. Latencies: median over the rounds of each round's "
        "percentile. Spread = half the range of the per-round rates."
    )
    out.print(table)
    errors = {side: sum(x.errors for x in loads[side]) for side in loads}
    if any(errors.values()):
        out.print(
            f"[red]Errors under load[/]: app {errors['app']}, bare {errors['bare']} "
            "(non-2xx responses or socket errors)"
        )
    for side in ("app", "bare"):
        requests = sum(x.requests for x in loads[side])
        seconds = sum(x.seconds for x in loads[side])
        spent = {
            key: sum(x.cpu.get(key, 0.0) for x in loads[side])
            for key in ("server", "postgres", "load")
        }
        if not requests or not seconds:
            continue
        postgres = (
            f"PostgreSQL backends {spent['postgres'] / requests * 1000:.2f} ms "
            f"({spent['postgres'] / seconds:.0%} of a CPU)"
            if all("postgres" in x.cpu for x in loads[side])
            else "PostgreSQL backends not visible from here"
        )
        out.print(
            f"CPU per request, {side}: server process {spent['server'] / requests * 1000:.2f} ms "
            f"({spent['server'] / seconds:.0%} of a CPU), {postgres}, load generator "
            f"{spent['load'] / requests * 1000:.2f} ms",
            highlight=False,
            soft_wrap=True,
        )
    ratio = tallies["app"].rate / tallies["bare"].rate if tallies["bare"].rate else 0.0
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    memory = ", ".join(
        f"{side} {harness.mib(value)}" for side, value in rss.items() if value is not None
    )
    out.print(
        f"GET /listings/{{id}}: app {tallies['app'].rate:,.0f} req/s vs bare Starlette + "
        f"asyncpg {tallies['bare'].rate:,.0f} req/s → {ratio:.2f}x ({verdict} the "
        f"{TARGET_RATIO:.2f}x target); server resident memory after the run: {memory}",
        highlight=False,
        soft_wrap=True,
    )


def run(options: Options) -> None:
    with harness.postgres_server() as server, harness.fresh_database(server) as url:
        measure(url, server, options)
