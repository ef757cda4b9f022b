"""Bank statement import: `market payments import-statement` against a plain CSV parse of the
same file (issue 6: a statement of 100,000 lines imports in a streaming pass, peak memory under
300 MB, and lines per second against a plain CSV parse).

Setup (not timed), in a fresh migrated database: 10 verified cooperatives with a fixed-price
listing of bulk wolfberry each, 50 verified buyers, and --rounds x --payments real orders
(`orders_service.place_order`) with a pending bank-transfer payment each
(`money_service.start_payment` with the offline provider), --payments fresh ones per round.

Per round a fresh statement CSV of --lines lines (new bank transaction ids) is generated with
the headers 交易日期,金额,附言,付款人,付款账号,流水号 (UTF-8 with a BOM, CRLF): --payments lines
quote one of the round's reference codes (90% the exact amount, 5% less, 5% more), the others
quote nothing, a random text (invoice or contract numbers, a mistyped code) or a well-formed
code nobody was given. Then, interleaved (rotating which goes first):

* csv.reader -- the baseline: `csv.reader` over the file, every row consumed and its amount
  turned into integer fen through Decimal;
* read_statement -- `payments.offline.read_statement` alone over the file, in this process;
* import -- `market payments import-statement FILE` as a subprocess on the benchmark database
  (interpreter start, imports and connecting included), its peak resident memory from
  `os.wait4` (the kernel's ru_maxrss of that one process);
* re-import -- the same command on the same file right after the import: 0 new lines.

Before each import the command also runs on a file with only the header: its fixed cost
(interpreter start, imports, connecting), printed below the table with the rates net of it.

After every import the `statement_import` row must count the lines and the outcomes as
generated, and the round's payments and orders must have moved accordingly; the re-import
must report 0 new lines. The run stops on any discrepancy.

`python -m bench statement [--rounds N]` runs it at the default size (100,000 lines, 1,000
payments); `python -m bench.statement --lines N --payments N --rounds N` chooses the sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import platform
import random
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench import harness
from bench.harness import Options, Tally, err, out
from bench.listing_read import _environment, _market_command
from bench.trading import ADDRESS, Users, fixed_listing, make_supply
from market.config import Settings
from market.db import create_engine, create_sessionmaker, plain_url
from market.money import service as money_service
from market.orders import service as orders_service
from market.orders.service import Terms
from market.organisations.models import Organisation
from payments.offline import (
    BankAccount,
    OfflineBankTransfer,
    StatementError,
    find_reference,
    read_statement,
    reference_code,
)
from tests.factories import make_org

TITLE = "Bank statement import"
TARGET_RSS = 300 * 1024 * 1024
DEFAULT_LINES = 100_000
DEFAULT_PAYMENTS = 1_000
DEFAULT_ROUNDS = 3
HEADER = ("交易日期", "金额", "附言", "付款人", "付款账号", "流水号")
COOPERATIVES = 10
BUYERS = 50
MAX_KG = 20  # per order, 1 to 20 kg of wolfberry at 60 yuan/kg
ORDERS_PER_TRANSACTION = 100
SHORT_SHARE = OVER_SHARE = 0.05  # of the lines quoting a code: under- and overpaid
# orders must not expire while the benchmark runs (a week, the settings' maximum)
TERMS = Terms(fee_bps=300, payment_minutes=7 * 24 * 60, freshness_margin_days=2)
SIDES = ("csv", "read", "import")  # rotated per round; the re-import follows the import
LABELS = {
    "csv": "csv.reader + Decimal (baseline)",
    "read": "read_statement alone",
    "import": "market payments import-statement",
    "reimport": "re-import (same file, 0 new)",
}


@dataclass(frozen=True)
class Spec:
    lines: int = DEFAULT_LINES
    payments: int = DEFAULT_PAYMENTS
    rounds: int = DEFAULT_ROUNDS


@dataclass(frozen=True)
class Due:
    """A pending bank-transfer payment: what the buyer should quote and pay."""

    code: str
    amount_fen: int


# ---------------------------------------------------------------- setup


async def make_payments(
    maker: async_sessionmaker[AsyncSession], count: int, progress: Progress
) -> list[Due]:
    """`count` orders of 1 to 20 kg from 50 buyers over 10 cooperatives' listings, each with a
    pending bank-transfer payment, committed every 100 orders."""
    rng = random.Random(6)
    settings = Settings(_env_file=None, database_url=None)
    providers = {
        "offline": OfflineBankTransfer(
            BankAccount(
                settings.bank_account_name, settings.bank_account_number, settings.bank_name
            )
        )
    }
    per_listing = -(-count // COOPERATIVES) * MAX_KG
    task = progress.add_task("Cooperatives, listings, buyers", total=COOPERATIVES + 1)
    users = Users()
    async with maker() as session, session.begin():
        listings = []
        for i in range(COOPERATIVES):
            supply = await make_supply(session, users, i, kg=max(10_000, per_listing))
            listings.append(await fixed_listing(session, supply, per_listing))
            progress.update(task, advance=1)
        buyers: list[tuple[uuid.UUID, uuid.UUID]] = []  # (organisation, user placing orders)
        for i in range(BUYERS):
            user = await users.make(session, f"采购员{i}")
            organisation = await make_org(
                session,
                owner=user,
                kind="buyer",
                region_code="110105",
                name_zh=f"对账采购商{i:03d}",
            )
            buyers.append((organisation.id, user.id))
        progress.update(task, advance=1)
    task = progress.add_task("Orders with bank-transfer payments", total=count)
    dues: list[Due] = []
    while len(dues) < count:
        async with maker() as session, session.begin():
            for _ in range(min(ORDERS_PER_TRANSACTION, count - len(dues))):
                i = len(dues)
                buyer_id, user_id = buyers[i % BUYERS]
                buyer = await session.get(Organisation, buyer_id)
                assert buyer is not None
                order = await orders_service.place_order(
                    session,
                    buyer=buyer,
                    user_id=user_id,
                    data={
                        "lines": [
                            {
                                "listing_id": listings[i % COOPERATIVES],
                                "quantity": rng.randint(1, MAX_KG),
                            }
                        ],
                        **ADDRESS,
                        "note": None,
                    },
                    terms=TERMS,
                )
                payment = await money_service.start_payment(
                    session,
                    providers=providers,
                    order_id=order.id,
                    buyer_id=buyer_id,
                    method="bank_transfer",
                )
                assert payment.reference_code is not None
                dues.append(Due(payment.reference_code, payment.amount_fen))
                progress.update(task, advance=1)
    return dues


# ---------------------------------------------------------------- the statement

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
    "彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢"
)
GIVEN = "建国秀英志强丽华德明海燕文军春梅永红玉兰国庆桂芳立新晓东小平金凤宝山淑珍爱民振华"
CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "兰州", "白银", "银川", "西安", "郑州")
TRADES = ("新发地", "鑫源", "丰收", "绿源", "金穗", "盛世", "恒通", "聚福", "嘉禾", "瑞丰", "惠民")
KINDS = ("商贸", "农产品", "食品", "供应链", "贸易", "果蔬", "餐饮管理", "超市")
MEMOS_WITH_CODE = (
    "货款{code}",
    "{code}",
    "{code} 枸杞货款",
    "订单{code} 谢谢",
    "付靖远枸杞款 {spaced}",
    "采购货款 {lower}",
    "农商桥{code}",
)
PLAIN_MEMOS = (
    "货款",
    "往来款",
    "采购款",
    "预付款",
    "还款",
    "转账",
    "枸杞货款",
    "订金",
    "尾款",
    "运费",
    "服务费",
    "退回多付款",
)


def payer(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return f"{rng.choice(CITIES)}{rng.choice(TRADES)}{rng.choice(KINDS)}有限公司"
    given = rng.choice([GIVEN[i : i + 2] for i in range(0, len(GIVEN), 2)])
    return rng.choice(SURNAMES) + (given if rng.random() < 0.7 else given[0])


def account(rng: random.Random) -> str:
    return "62" + "".join(rng.choice("0123456789") for _ in range(rng.choice((14, 17))))


def yuan(fen: int, rng: random.Random) -> str:
    """An amount as banks print it: 1234.50, sometimes with thousands separators."""
    whole, cents = divmod(fen, 100)
    if whole >= 1000 and rng.random() < 0.3:
        return f"{whole:,}.{cents:02d}"
    return f"{whole}.{cents:02d}"


def code_memo(code: str, rng: random.Random) -> str:
    spaced = f"{code[:3]}-{code[3:7]}-{code[7:11]}-{code[11:]}"
    return rng.choice(MEMOS_WITH_CODE).format(code=code, spaced=spaced, lower=code.lower())


def mistyped(code: str, rng: random.Random) -> str:
    """One character of the body replaced: the checksum refuses it."""
    i = rng.randrange(3, len(code))
    return code[:i] + rng.choice([c for c in "0123456789ABCDEFGHJKMNPQRSTVWXYZ" if c != code[i]])


def plain_memo(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.25:
        return ""
    if roll < 0.65:
        return rng.choice(PLAIN_MEMOS)
    if roll < 0.8:
        return f"发票号{rng.randrange(10**7, 10**8)} {rng.choice(PLAIN_MEMOS)}"
    if roll < 0.9:
        return f"合同HT2026-{rng.randrange(1, 10**5):05d} 第{rng.randint(1, 9)}批"
    if roll < 0.97:
        return "货款" + mistyped(reference_code(uuid.UUID(int=rng.getrandbits(128))), rng)
    return "货款" + reference_code(uuid.UUID(int=rng.getrandbits(128)))  # valid, nobody's


@dataclass
class Expected:
    lines: int
    matched: int = 0
    underpaid: int = 0
    overpaid: int = 0
    unmatched: int = 0
    received_fen: int = 0  # on the round's payments

    def counts(self) -> dict[str, int]:
        return {
            "line_count": self.lines,
            "new_count": self.lines,
            "matched": self.matched,
            "underpaid": self.underpaid,
            "overpaid": self.overpaid,
            "unmatched": self.unmatched,
        }


def write_statement(path: Path, lines: int, dues: list[Due], round_: int, tag: str) -> Expected:
    """The round's statement: one line per due payment at random places, the rest unmatched."""
    rng = random.Random(f"{tag}-{round_}")
    shuffled = rng.sample(dues, len(dues))
    short = round(len(dues) * SHORT_SHARE)
    over = round(len(dues) * OVER_SHARE)
    at = dict(zip(rng.sample(range(lines), len(dues)), range(len(dues)), strict=True))
    expected = Expected(lines)
    start = dt.date(2026, 11, 1)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(HEADER)
        for i in range(lines):
            booked = (start + dt.timedelta(days=i * 30 // lines)).isoformat()
            k = at.get(i)
            if k is None:
                amount = int(10 ** rng.uniform(3.5, 7.5))
                memo = plain_memo(rng)
                expected.unmatched += 1
            else:
                due = shuffled[k]
                if k < short:
                    amount = due.amount_fen - rng.randint(1, min(5000, due.amount_fen - 1))
                    expected.underpaid += 1
                elif k < short + over:
                    amount = due.amount_fen + rng.randint(1, 5000)
                    expected.overpaid += 1
                else:
                    amount = due.amount_fen
                    expected.matched += 1
                expected.received_fen += amount
                memo = code_memo(due.code, rng)
                if find_reference(memo) != due.code:
                    raise AssertionError(f"the generated memo {memo!r} does not quote {due.code}")
            bank_id = f"{tag}{round_:02d}{i:08d}"
            writer.writerow((booked, yuan(amount, rng), memo, payer(rng), account(rng), bank_id))
    return expected


# ---------------------------------------------------------------- the sides


def parse_csv(path: Path) -> int:
    """The baseline: every row read, its amount as integer fen."""
    rows = total = 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            total += int(Decimal(row[1].replace(",", "")) * 100)
            rows += 1
    return rows


def read_only(path: Path) -> int:
    rows = 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        for item in read_statement(f):
            if isinstance(item, StatementError):
                raise AssertionError(f"read_statement refused line {item.line_number}: {item}")
            rows += 1
    return rows


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    output: str


# Runs the command and writes "seconds ru_maxrss" of it to argv[1]. A child's ru_maxrss starts
# at its parent's high-water mark (Linux keeps it across fork/vfork and exec), so the command
# is started by this small process, not by the benchmark's own (hundreds of MiB after setup).
LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
child.returncode = code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds} {usage.ru_maxrss}")
sys.exit(code if code >= 0 else 128 - code)
"""


def run_import(path: Path, env: dict[str, str], tmp: Path) -> Run:
    """`market payments import-statement FILE` in a subprocess: its seconds from start to
    exit and its peak resident memory (the kernel's ru_maxrss of that process, from wait4)."""
    argv = [*_market_command(), "payments", "import-statement", str(path)]
    log_out, log_err, figures = tmp / "import.out", tmp / "import.err", tmp / "import.rusage"
    figures.unlink(missing_ok=True)
    with log_out.open("wb") as sink, log_err.open("wb") as errors:
        code = subprocess.call(
            [sys.executable, "-c", LAUNCHER, str(figures), *argv],
            env=env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=errors,
        )
    output = log_out.read_text(errors="replace").strip()
    if code != 0 or not figures.exists():
        raise RuntimeError(
            f"{' '.join(argv)} exited with {code}:\n{output}\n"
            + log_err.read_text(errors="replace")[-4000:]
        )
    seconds, max_rss_kib = figures.read_text().split()
    return Run(float(seconds), int(max_rss_kib) * 1024, output)  # KiB on Linux


IMPORT_SQL = """
SELECT line_count, new_count, matched, underpaid, overpaid, unmatched,
       (SELECT count(*) FROM statement_line l WHERE l.import_id = i.id) AS rows
  FROM statement_import i
 WHERE filename = $1
 ORDER BY created_at
"""
PAYMENTS_SQL = """
SELECT count(*) FILTER (WHERE p.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE p.status = 'pending' AND p.captured_fen > 0) AS partly,
       count(*) FILTER (WHERE o.status = 'paid') AS orders_paid,
       coalesce(sum(p.captured_fen), 0) AS captured
  FROM payment p JOIN "order" o ON o.id = p.order_id
 WHERE p.reference_code = ANY($1::text[])
"""


async def check_import(
    url: str, filename: str, expected: Expected, dues: list[Due], imports: int
) -> list[str]:
    """What is wrong after `imports` imports of `filename` (the first must have applied every
    line as generated, the later ones nothing); [] when all is as generated."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        records = await conn.fetch(IMPORT_SQL, filename)
        paid = await conn.fetchrow(PAYMENTS_SQL, [d.code for d in dues])
    finally:
        await conn.close()
    problems = []
    if len(records) != imports:
        return [f"{filename}: {len(records)} statement_import rows, expected {imports}"]
    keys = ("line_count", "new_count", "matched", "underpaid", "overpaid", "unmatched")
    for n, record in enumerate(records):
        want = (
            expected.counts() if n == 0 else dict.fromkeys(keys, 0) | {"line_count": expected.lines}
        )
        got = {k: record[k] for k in keys}
        if got != want:
            problems.append(f"{filename} import {n + 1}: counted {got}, generated {want}")
        if record["rows"] != want["new_count"]:
            problems.append(
                f"{filename} import {n + 1}: {record['rows']} statement_line rows written, "
                f"expected {want['new_count']}"
            )
    settled = expected.matched + expected.overpaid
    facts = (paid["succeeded"], paid["orders_paid"], paid["partly"], paid["captured"])
    want_facts = (settled, settled, expected.underpaid, expected.received_fen)
    if facts != want_facts:
        problems.append(
            f"{filename}: payments succeeded {facts[0]}, orders paid {facts[1]}, partly paid "
            f"{facts[2]}, captured {facts[3]} fen; expected {want_facts[0]}, {want_facts[1]}, "
            f"{want_facts[2]}, {want_facts[3]}"
        )
    return problems


# ---------------------------------------------------------------- the run


@dataclass
class Results:
    tallies: dict[str, Tally] = field(default_factory=lambda: {s: Tally() for s in LABELS})
    peak_rss: dict[str, int] = field(default_factory=lambda: {"import": 0, "reimport": 0})
    expected: list[Expected] = field(default_factory=list)
    file_bytes: int = 0
    empty: list[Run] = field(default_factory=list)  # a statement with only its header
    output: dict[str, str] = field(default_factory=dict)  # what the command printed, last round


def measure(url: str, spec: Spec, tmp: Path) -> Results:
    results = Results()
    tag = "ABC" + uuid.uuid4().hex[:8].upper()
    env = _environment(tmp) | {"MARKET_DATABASE_URL": plain_url(url)}
    with harness.progress() as bar:

        async def setup() -> list[Due]:
            engine = create_engine(url, pool_size=2)
            try:
                return await make_payments(
                    create_sessionmaker(engine), spec.rounds * spec.payments, bar
                )
            finally:
                await engine.dispose()

        dues = asyncio.run(setup())
        empty = tmp / "empty.csv"
        empty.write_text(",".join(HEADER) + "\r\n", encoding="utf-8-sig")
        run_import(empty, env, tmp)  # a warm-up: the imports' files into the page cache
        task = bar.add_task("Rounds (csv, read, import, re-import)", total=spec.rounds * 4)
        order = list(SIDES)
        for r in range(spec.rounds):
            mine = dues[r * spec.payments : (r + 1) * spec.payments]
            path = tmp / f"statement-{tag}-{r + 1}.csv"
            expected = write_statement(path, spec.lines, mine, r, tag)
            results.expected.append(expected)
            results.file_bytes = path.stat().st_size
            for side in order:
                for name in ("import", "reimport") if side == "import" else (side,):
                    if name == "import":  # the fixed cost of the command, this round
                        results.empty.append(run_import(empty, env, tmp))
                    if name in ("import", "reimport"):
                        run = run_import(path, env, tmp)
                        seconds = run.seconds
                        results.peak_rss[name] = max(results.peak_rss[name], run.peak_rss)
                        results.output[name] = run.output
                        imports = 1 if name == "import" else 2
                        problems = asyncio.run(
                            check_import(url, path.name, expected, mine, imports)
                        )
                        if problems:
                            for problem in problems:
                                err.print(f"[bold red]discrepancy:[/] {problem}", highlight=False)
                            raise SystemExit(1)
                    else:
                        start = harness.now()
                        got = (parse_csv if name == "csv" else read_only)(path)
                        seconds = harness.now() - start
                        if got != spec.lines:
                            raise AssertionError(f"{name} read {got} lines of {spec.lines}")
                    results.tallies[name].add(spec.lines, seconds)
                    bar.update(task, advance=1)
            order = order[1:] + order[:1]
            path.unlink()
    return results


def report(results: Results, spec: Spec, version: str, load_at_start: float) -> None:
    base = results.tallies["csv"]
    out.print()
    gen = results.expected[0]
    out.print(
        f"[bold]{TITLE}[/]: {spec.lines:,} lines per statement ({results.file_bytes / 2**20:.1f} "
        f"MiB of UTF-8 CSV), of which {gen.matched:,} matched, {gen.underpaid:,} underpaid, "
        f"{gen.overpaid:,} overpaid and {gen.unmatched:,} unmatched; {spec.rounds} interleaved "
        f"rounds, a fresh file each; PostgreSQL {version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load_at_start:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title=TITLE, title_justify="left", caption_justify="left")
    for name in ("side", "lines/s", "s per file", "÷ csv.reader", "spread", "peak RSS"):
        table.add_column(name, justify="left" if name == "side" else "right")
    for side, label in LABELS.items():
        tally = results.tallies[side]
        rss = results.peak_rss.get(side)
        table.add_row(
            label,
            f"{tally.rate:,.0f}",
            f"{tally.seconds / len(tally.chunks):.2f}",
            f"{tally.rate / base.rate:.3f}x",
            f"±{tally.spread / 2:.0%}",
            harness.mib(rss) if rss else "-",
        )
    table.caption = (
        "lines/s over all rounds; ÷ csv.reader = the rate as a share of the plain parse's. "
        "import and re-import run as subprocesses (interpreter start, imports and connecting "
        "included); peak RSS = that process's ru_maxrss, highest round. Spread = half the range "
        "of the per-round rates."
    )
    out.print(table)
    peak = results.peak_rss["import"]
    verdict = "met" if peak < TARGET_RSS else "MISSED"
    out.print(
        f"peak resident memory of the import: {harness.mib(peak)} (target < 300 MiB: {verdict}); "
        f"re-import {harness.mib(results.peak_rss['reimport'])}",
        highlight=False,
        soft_wrap=True,
    )
    if results.empty:
        fixed = sum(r.seconds for r in results.empty) / len(results.empty)
        net = []
        for side in ("import", "reimport"):
            tally = results.tallies[side]
            per_file = tally.seconds / len(tally.chunks)
            net.append(f"{spec.lines / (per_file - fixed):,.0f}" if per_file > fixed else "-")
        out.print(
            f"fixed cost of one run of the command (a statement with only its header: "
            f"interpreter, imports, connecting; once per round): {fixed:.2f} s, peak RSS "
            f"{harness.mib(max(r.peak_rss for r in results.empty))}; without it the import "
            f"reads {net[0]} lines/s and the re-import {net[1]}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        "every import counted its lines and outcomes as generated, and the round's payments "
        "and orders moved accordingly; every re-import found 0 new lines. The command printed: "
        + "; ".join(
            f"{LABELS[side].split(' (')[0]}: {text.split(' (')[0]}"
            for side, text in results.output.items()
        ),
        highlight=False,
        soft_wrap=True,
    )


def run_spec(spec: Spec) -> None:
    load_at_start = os.getloadavg()[0]
    err.print(
        f"{TITLE}: {spec.rounds} x {spec.payments:,} orders with payments, then {spec.rounds} "
        f"rounds of {spec.lines:,} lines"
    )
    with (
        harness.postgres_server() as server,
        harness.fresh_database(server) as url,
        tempfile.TemporaryDirectory(prefix="agribridge-statement-") as tmp,
    ):
        version = asyncio.run(harness.server_version(url))
        results = measure(url, spec, Path(tmp))
    report(results, spec, version, load_at_start)


def run(options: Options) -> None:
    """`python -m bench statement [--lines N] [--payments N] [--rounds N]`."""
    run_spec(Spec(lines=options.statement_lines, payments=options.payments, rounds=options.rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statement", description=__doc__)
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="lines per statement")
    parser.add_argument(
        "--payments", type=int, default=DEFAULT_PAYMENTS, help="lines quoting a payment, per round"
    )
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="interleaved rounds")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if min(args.lines, args.payments, args.rounds) < 1:
        parser.error("--lines, --payments and --rounds must be at least 1")
    if args.payments > args.lines:
        parser.error("--payments cannot exceed --lines")
    try:
        run_spec(Spec(lines=args.lines, payments=args.payments, rounds=args.rounds))
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
