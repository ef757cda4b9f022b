"""The `market` command: serve, demo, database migrations, administration."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from market.config import Settings
from market.db import (
    Database,
    check_reachable,
    create_engine,
    create_sessionmaker,
    job_session,
    open_database,
    short_ref,
)
from market.errors import MarketError, StartupError

app = typer.Typer(
    help="AgriBridge (农商桥) marketplace backend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
regions_app = typer.Typer(help="The gazetteer and poverty-county flags.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(regions_app, name="regions")
households_app = typer.Typer(help="The poor-household registry.", no_args_is_help=True)
app.add_typer(households_app, name="households")
sourcing_app = typer.Typer(help="The sourcing ledger.", no_args_is_help=True)
app.add_typer(sourcing_app, name="sourcing")
search_app = typer.Typer(help="The listing search index and its sync.", no_args_is_help=True)
app.add_typer(search_app, name="search")
payments_app = typer.Typer(
    help="Payments: bank statements, reconciliation, the ledger.", no_args_is_help=True
)
app.add_typer(payments_app, name="payments")

console = Console()
# a wide stderr when it is not a terminal, so that CI logs keep whole table rows
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> typer.Exit:
    """Print one plain line and exit non-zero: configuration problems are not tracebacks."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@contextmanager
def database(settings: Settings) -> Iterator[Database]:
    """The configured database (or embedded PostgreSQL), reachable, closed on the way out."""
    db: Database | None = None
    # a SIGTERM during start-up (initdb, migrations, demo data) must also stop embedded PostgreSQL
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        db = open_database(settings)
        asyncio.run(check_reachable(db.url))
        yield db
    except StartupError as exc:
        _exit_if_stopped()
        raise fail(str(exc)) from None
    except BaseException:
        _exit_if_stopped()  # a SIGTERM, as the cancellation or another error it turned into
        raise
    finally:
        if db is not None:
            db.close()


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


# ---------------------------------------------------------------- serve and demo


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "another program uses it: set PORT / MARKET_PORT to a free port"
            ) from None


def _serve(settings: Settings, db: Database) -> None:
    import uvicorn

    from market import migrate
    from market.app import create_app
    from market.observability import configure_logging

    _exit_if_stopped()  # a SIGTERM during start-up that something swallowed: do not serve
    asyncio.run(migrate.require_current(db.url))
    _check_port(settings.host, settings.port)
    configure_logging(settings.log_level, settings.log_json)
    application = create_app(settings, database_url=db.url, check_migrations=False)
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
    )
    err.print(
        f"AgriBridge serving on http://{settings.host}:{settings.port} "
        f"(API docs: http://{settings.host}:{settings.port}/docs)",
        highlight=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGTERM after its graceful shutdown, while its loop still runs: our
    # handler notes it, and the exit below stops the embedded PostgreSQL on the way out
    # instead of the process just dying
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server.run()
    _exit_if_stopped()
    if not server.started:
        raise StartupError(f"the server could not start on {settings.host}:{settings.port}")


# the signal that asked this process to stop, once one has
_stopped_by: list[int] = []


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Stop, and remember why. In plain code, raise SystemExit(143) right here. While an event
    loop runs (migrations, demo data), cancel its tasks instead, at their next `await`: an
    exception raised here could land in the middle of the database driver's callback, which
    turned it into another error or left a task waiting forever for an answer it had already
    read. `database()` turns what comes out into the exit; `_serve` refuses to start after
    a stop that something swallowed."""
    _stopped_by.append(signum)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise SystemExit(128 + signum) from None
    loop.call_soon_threadsafe(_cancel_tasks, loop)


def _cancel_tasks(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


def _exit_if_stopped() -> None:
    if _stopped_by:
        raise SystemExit(128 + _stopped_by[0])


def _settings(host: str | None = None, port: int | None = None) -> Settings:
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError: name the variable
        raise fail(f"invalid configuration: {exc}".replace("\n", " ")) from None
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    return settings.model_copy(update=updates)


HostOpt = Annotated[str | None, typer.Option(help="Address to bind (default MARKET_HOST).")]
PortOpt = Annotated[
    int | None, typer.Option(help="Port to bind (default MARKET_PORT, else 8000).", envvar="PORT")
]


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None) -> None:
    """Serve the HTTP API. Refuses a database whose schema is not current."""
    settings = _settings(host, port)
    with database(settings) as db:
        try:
            _serve(settings, db)
        except StartupError as exc:
            raise fail(str(exc)) from None


@app.command()
def demo(host: HostOpt = None, port: PortOpt = None) -> None:
    """Upgrade the database, load the Baiyin demo data if it is empty, print logins, serve."""
    from market import demo as demo_data
    from market import migrate

    settings = _settings(host, port)
    with database(settings) as db:
        try:
            migrate.upgrade(db.url)
            loaded = asyncio.run(_load_demo(db.url, settings.hashing_key()))
            _print_logins(demo_data.logins(), fresh=loaded)
            _serve(settings, db)
        except StartupError as exc:
            raise fail(str(exc)) from None


async def _load_demo(url: str, key: bytes) -> bool:
    from market import demo as demo_data

    async with job_session(url) as session:
        if not await demo_data.is_empty(session):
            return False
        with progress() as bar:
            task = bar.add_task("Loading demo data", total=demo_data.steps())
            await demo_data.load(
                session,
                key=key,
                advance=lambda what: bar.update(task, advance=1, description=what),
            )
        return True


def _print_logins(logins: list[Any], *, fresh: bool) -> None:
    table = Table(title="Demo logins" + (" (just loaded)" if fresh else ""), show_lines=False)
    for column in ("organisation", "kind", "e-mail (username)", "password"):
        table.add_column(column)
    for login in logins:
        table.add_row(login.organisation, login.kind, login.email, login.password)
    err.print(table)


# ---------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from market import migrate

    with database(_settings()) as db:
        migrate.upgrade(db.url, revision)
        console.print(f"database at {asyncio.run(migrate.current(db.url))}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")] = "-1",
) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from market import migrate

    with database(_settings()) as db:
        migrate.downgrade(db.url, revision)
        console.print(f"database at {asyncio.run(migrate.current(db.url)) or 'base (empty)'}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and the latest one this code knows."""
    from market import migrate

    with database(_settings()) as db:
        now = asyncio.run(migrate.current(db.url))
        latest = migrate.head()
        state = "up to date" if now == latest else "behind: run `market db upgrade`"
        console.print(f"database: {now or 'empty'}  latest: {latest}  ({state})")


# ---------------------------------------------------------------- admin


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="E-mail of the operator.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    name: Annotated[str, typer.Option(help="Display name.")] = "平台管理员",
    region: Annotated[str, typer.Option(help="Region code of the platform.")] = "110000",
) -> None:
    """Create a platform operator (and the platform organisation on first use)."""
    from pydantic import ValidationError

    from market.accounts.schemas import UserCreate

    try:
        UserCreate(email=email, password=password, display_name=name)  # the API's rules
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise fail(problems) from None
    settings = _settings()
    with database(settings) as db:
        try:
            created = asyncio.run(_create_admin(db.url, email, password, name, region))
        except MarketError as exc:
            raise fail(exc.detail) from None
        console.print(f"platform operator {email} {'created' if created else 'already existed'}")


async def _create_admin(url: str, email: str, password: str, name: str, region: str) -> bool:
    from sqlalchemy import select

    from market.accounts import service as accounts_service
    from market.accounts.security import verify_password
    from market.errors import Conflict
    from market.organisations import service as organisations_service
    from market.organisations.models import Membership, Organisation

    async with job_session(url) as session:
        user = await accounts_service.find_user_by_email(session, email)
        platform = await session.scalar(
            select(Organisation).where(Organisation.kind == "platform").limit(1)
        )
        if user is None:
            user = await accounts_service.register(
                session, email=email, password=password, display_name=name
            )
        elif not verify_password(user.password_hash, password):
            # e-mails are not verified at registration: whoever registered this address
            # first must not become a platform operator by someone else's command
            raise Conflict(
                f"{email} is already registered and the password given is not its password; "
                "nobody was made a platform operator.",
                code="wrong_password",
            )
        if platform is None:
            platform = await organisations_service.create_organisation(
                session,
                creator_id=user.id,
                data={
                    "kind": "platform",
                    "name_zh": "农商桥平台运营中心",
                    "region_code": region,
                },
            )
            await organisations_service.verify(
                session, organisation_id=platform.id, operator_id=user.id
            )
            return True
        if await session.get(Membership, (platform.id, user.id)) is None:
            session.add(Membership(organisation_id=platform.id, user_id=user.id, role="owner"))
            return True
        return False


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective settings (environment and .env), secrets masked."""
    values = _settings().masked()
    if as_json:
        console.print_json(json.dumps(values, default=str))
        return
    table = Table(title="Effective settings (MARKET_*)")
    table.add_column("setting")
    table.add_column("value")
    for name, value in values.items():
        table.add_row(f"MARKET_{name.upper()}", "" if value is None else str(value))
    console.print(table)


@regions_app.command("import-poverty")
def import_poverty(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV: code,designated")],
) -> None:
    """Set designated-poverty-county flags from a CSV (UTF-8 or GB18030), as a platform job."""
    from market.regions import service as regions_service

    data = file.read_bytes()
    settings = _settings()

    async def run() -> Any:
        async with job_session(db.url) as session:
            with progress() as bar:
                task = bar.add_task(f"Importing {file.name}", total=None)
                result = await regions_service.import_poverty_counties(
                    session, data=data, is_platform=True, authority_scopes=[]
                )
                bar.update(task, total=result.rows, completed=result.rows)
            return result

    with database(settings) as db:
        try:
            result = asyncio.run(run())
        except MarketError as exc:
            raise fail(exc.detail) from None
    console.print(
        f"{result.rows} rows: {result.changed} changed, {result.unchanged} unchanged, "
        f"{len(result.errors)} refused"
    )
    for problem in result.errors:
        err.print(f"  line {problem['line']}: {problem['reason']}", highlight=False)
    if result.errors:
        raise typer.Exit(code=2)


@sourcing_app.command("verify")
def sourcing_verify() -> None:
    """Recompute the hash chain of the sourcing ledger; name the first record that fails.
    Exit code 0 when the chain verifies, 3 when it does not."""
    from market.sourcing import service as sourcing_service

    settings = _settings()

    async def run() -> Any:
        async with job_session(db.url) as session:
            total = await sourcing_service.count_records(session)
            with progress() as bar:
                task = bar.add_task("Verifying the sourcing ledger", total=total)
                return await sourcing_service.verify_chain(
                    session, progress=lambda n: bar.advance(task, n)
                )

    with database(settings) as db:
        result = asyncio.run(run())
    if result.ok:
        console.print(f"ledger verifies: {result.checked} records, head at {result.head_seq}")
        return
    broken = result.first_break
    assert broken is not None
    err.print(
        f"ledger does NOT verify: record {broken.seq} ({broken.record_id or 'missing'}): "
        f"{broken.reason}",
        highlight=False,
    )
    raise typer.Exit(code=3)


@households_app.command("import")
def import_households(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Registry CSV (UTF-8 or GB18030).")
    ],
    mode: Annotated[
        str,
        typer.Option(
            help="partial: import the valid households and report bad rows; "
            "all_or_nothing: any bad row refuses the whole file."
        ),
    ] = "partial",
    authority: Annotated[
        str | None,
        typer.Option(
            help="Id of the authority organisation importing: rows outside its audit regions "
            "are refused. Default: a platform import, for every region."
        ),
    ] = None,
) -> None:
    """Import the poor-household registry from a CSV with the columns registry_id,
    county_code, head_name, id_number, phone, village, poor_from, poor_until (one row per poor
    period). Re-importing the same file changes nothing. Exit code 2 when rows were refused."""
    import uuid

    from market.households import service as households_service

    try:
        import_mode = households_service.ImportMode(mode)
        authority_id = uuid.UUID(authority) if authority else None
    except ValueError:
        raise fail(
            "--mode must be partial or all_or_nothing, and --authority an organisation id"
        ) from None
    data = file.read_bytes()
    settings = _settings()

    async def run() -> Any:
        async with job_session(db.url) as session:
            official = await households_service.authority_job(session, authority_id)
            with progress() as bar:
                task = bar.add_task(f"Importing {file.name}", total=None)
                return await households_service.import_registry(
                    session,
                    data=data,
                    key=settings.hashing_key(),
                    official=official,
                    mode=import_mode,
                    on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                )

    with database(settings) as db:
        try:
            result = asyncio.run(run())
        except MarketError as exc:
            for problem in exc.errors or []:
                if "line" in problem:
                    err.print(f"  line {problem['line']}: {problem['message']}", highlight=False)
            raise fail(exc.detail) from None
    console.print(
        f"{result.rows} rows, {result.households} households: {result.created} created, "
        f"{result.updated} updated, {result.unchanged} unchanged, {result.refused} refused"
    )
    for problem in result.errors:
        err.print(f"  line {problem.line}: {problem.reason}", highlight=False)
    if result.errors:
        raise typer.Exit(code=2)


# ---------------------------------------------------------------- payments


@payments_app.command("import-statement")
def import_statement(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The bank's CSV.")],
    encoding: Annotated[str, typer.Option(help="utf-8 (a BOM is fine), gbk or gb18030.")] = "utf-8",
) -> None:
    """Import a bank statement: credit lines quoting a payment's reference code pay it
    (matched, underpaid or overpaid); the rest wait in the review queue. Read as a stream in
    one transaction; re-importing the same file changes nothing. Exit code 2 when the file
    has unreadable lines (then nothing is imported)."""
    from market.money import statements

    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        "".encode(codec)
    except LookupError:
        raise fail(f"unknown encoding {encoding!r}: use utf-8, gbk or gb18030") from None
    size = file.stat().st_size
    settings = _settings()

    async def run() -> Any:
        async with job_session(db.url) as session:
            with (
                progress() as bar,
                file.open("rb") as raw,
                io.TextIOWrapper(raw, encoding=codec, newline="") as text,
            ):
                task = bar.add_task(f"Importing {file.name}", total=size)

                def advance(_: int) -> None:
                    bar.update(task, completed=raw.tell())

                return await statements.import_statement(
                    session, lines=text, filename=file.name, user_id=None, progress=advance
                )

    with database(settings) as db:
        try:
            record = asyncio.run(run())
        except UnicodeDecodeError as exc:
            raise fail(
                f"{file.name} is not {encoding}: {exc.reason} (try --encoding gbk)"
            ) from None
        except MarketError as exc:
            for problem in exc.errors or []:
                err.print(f"  {problem['field']}: {problem['message']}", highlight=False)
            err.print(exc.detail, highlight=False)
            raise typer.Exit(code=2) from None
    console.print(
        f"{record.line_count} lines, {record.new_count} new: {record.matched} matched, "
        f"{record.underpaid} underpaid, {record.overpaid} overpaid, {record.unmatched} unmatched "
        "(under-, overpaid and unmatched lines wait in the review queue)",
        highlight=False,
    )


@payments_app.command("reconcile")
def payments_reconcile() -> None:
    """One round of the money worker now: handle stored webhooks, capture what shipped, void
    dead orders' payments, record and send refunds owed, settle delivered parts, and fetch
    payments the provider has not told us about (lost webhooks, crashes)."""
    from market.app import build_payments
    from market.money import tasks as money_tasks

    settings = _settings()

    async def run() -> dict[str, int]:
        engine = create_engine(db.url, pool_size=2)
        providers = build_payments(settings)
        try:
            return await money_tasks.run_once(
                create_sessionmaker(engine), providers, money_tasks.timing(settings)
            )
        finally:
            for provider in providers.values():
                await provider.close()
            await engine.dispose()

    with database(settings) as db:
        done = asyncio.run(run())
    console.print(", ".join(f"{name.replace('_', ' ')}: {n}" for name, n in done.items()))


@payments_app.command("ledger")
def payments_ledger() -> None:
    """The trial balance: every ledger account with its balance (debits minus credits, in
    yuan); the total is always zero."""
    from market.money import ledger

    settings = _settings()

    async def run() -> Any:
        async with job_session(db.url) as session:
            return await ledger.trial_balance(session)

    with database(settings) as db:
        rows = asyncio.run(run())
    total = 0
    for kind, organisation, provider, currency, balance in rows:
        total += balance
        owner = provider or (short_ref(organisation) if organisation else "")
        console.print(
            f"{ledger.ACCOUNT_NAMES[kind]:<40} {owner:<10} {currency} {_yuan(balance):>16}",
            highlight=False,
        )
    console.print(f"{'total':<40} {'':<10}     {_yuan(total):>16}", highlight=False)


def _yuan(fen: int) -> str:
    """Exact yuan for display: integer arithmetic, never a float."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


# ---------------------------------------------------------------- search


@asynccontextmanager
async def _search_sync(settings: Settings, url: str) -> AsyncIterator[tuple[Any, Any]]:
    """(sessionmaker, search backend) for a command, closed on the way out."""
    from market.app import build_search
    from market.db import create_engine, create_sessionmaker

    engine = create_engine(url, pool_size=2)
    search = build_search(settings, engine)
    try:
        yield create_sessionmaker(engine), search
    finally:
        await search.close()
        await engine.dispose()


@app.command()
def worker() -> None:
    """Run the background work until stopped (Ctrl-C or SIGTERM): send listing changes from the
    outbox to the search backend, expire unpaid orders and bids, clear closed auctions,
    confirm silent deliveries, send notification e-mails, handle payment webhooks, capture,
    refund, settle and reconcile payments. Any number
    may run side by side; turn the server's own loops off with MARKET_WORKER=false."""
    from market.app import build_payments, freeze_startup_objects
    from market.listing_search import tasks as search_tasks
    from market.money import tasks as money_tasks
    from market.notifications import tasks as notifications_tasks
    from market.notifications.service import LogTransport
    from market.observability import configure_logging
    from market.orders import tasks as orders_tasks
    from market.orders.service import order_terms
    from market.trading import tasks as trading_tasks

    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with _search_sync(settings, db.url) as (sessionmaker, search):
            err.print(f"search worker running ({search.name}); stop with Ctrl-C", highlight=False)
            freeze_startup_objects()
            await asyncio.gather(
                search_tasks.run(
                    sessionmaker, search, interval=settings.search_worker_interval_s, stop=stop
                ),
                orders_tasks.run(sessionmaker, stop=stop),
                trading_tasks.run(sessionmaker, order_terms(settings), stop=stop),
                notifications_tasks.run(sessionmaker, LogTransport(), stop=stop),
                money_tasks.run(
                    sessionmaker, build_payments(settings), money_tasks.timing(settings), stop=stop
                ),
            )

    with database(settings) as db:
        asyncio.run(run())
    err.print("search worker stopped", highlight=False)


@search_app.command("reindex")
def search_reindex(
    batch: Annotated[int, typer.Option(min=10, max=10_000, help="Listings per batch.")] = 1000,
) -> None:
    """Rebuild the search index from the database, with no downtime: on Elasticsearch into a
    new index that replaces the old one in one alias switch at the end; on PostgreSQL by
    rewriting every row in place."""
    from market.listing_search import service as search_service

    settings = _settings()

    async def run() -> Any:
        async with _search_sync(settings, db.url) as (sessionmaker, search):
            total = await search_service.count_active(sessionmaker)
            with progress() as bar:
                task = bar.add_task(f"Reindexing listings ({search.name})", total=total)
                return await search_service.reindex(
                    sessionmaker, search, batch=batch, advance=lambda n: bar.advance(task, n)
                )

    with database(settings) as db:
        try:
            result = asyncio.run(run())
        except RuntimeError as exc:
            raise fail(f"reindex failed: {exc}") from None
    where = f" into {result.index} (now behind the alias)" if result.index else ""
    console.print(
        f"reindexed {result.documents} listings{where}; {result.deletions} hidden ones removed",
        highlight=False,
    )


@search_app.command("check")
def search_check(
    sample: Annotated[int, typer.Option(min=1, max=100_000, help="Listings to compare.")] = 1000,
) -> None:
    """Compare the index with the database: counts, and the versions of a random sample of
    listings. Exit code 0 when they agree, 3 when they do not."""
    from market.listing_search import service as search_service

    settings = _settings()

    async def run() -> Any:
        async with _search_sync(settings, db.url) as (sessionmaker, search):
            return await search_service.check(sessionmaker, search, sample=sample)

    with database(settings) as db:
        result = asyncio.run(run())
    table = Table("", "count")
    table.add_row("listings on sale (database)", str(result.database))
    table.add_row("documents (index)", str(result.index))
    table.add_row("changes waiting (outbox)", str(result.pending))
    table.add_row("changes refused (parked)", str(result.parked))
    table.add_row("sampled listings", str(result.sampled))
    table.add_row("sampled with another version", str(len(result.stale)))
    console.print(table)
    for listing_id, version, indexed in result.stale[:20]:
        console.print(f"  {listing_id}: database v{version}, index v{indexed or '-'}")
    if not result.in_step:
        hint = " (changes are still waiting)" if result.pending else ""
        err.print(
            f"the index is not in step with the database{hint}; "
            "`market search reindex` rebuilds it",
            highlight=False,
        )
        raise typer.Exit(code=3)
    console.print("the index is in step with the database")


@search_app.command("parked")
def search_parked(
    retry: Annotated[bool, typer.Option(help="Put them back in the queue.")] = False,
) -> None:
    """List the listing changes the search backend refused, with the reason; --retry queues
    them again once the cause is mended."""
    from market.listing_search import service as search_service

    settings = _settings()

    async def run() -> tuple[list[dict[str, Any]], int]:
        async with job_session(db.url) as session:
            conn = await session.connection()
            rows = await search_service.parked(conn)
            return rows, (await search_service.retry_parked(conn) if retry else 0)

    with database(settings) as db:
        rows, requeued = asyncio.run(run())
    for row in rows:
        console.print(
            f"{row['listing_id']}  {row['attempts']} attempts  {row['last_error']}",
            highlight=False,
        )
    console.print(f"{len(rows)} parked" + (f"; {requeued} queued again" if retry else ""))


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
