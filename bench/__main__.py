"""`python -m bench [NAME ...] [--requests N] [--lots N --records N] [--listings N]`: run the
benchmarks, print ratios."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench import BENCHMARKS
from bench.harness import ENV_URL, Options, err


def _sizes(value: str) -> tuple[int, ...]:
    """`--bids 200,1000` -> (200, 1000)."""
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("every size must be at least 1")
    return sizes


def parse(argv: list[str]) -> tuple[list[str], Options]:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="AgriBridge benchmarks. Figures are ratios against a baseline measured in "
        f"the same run. PostgreSQL: {ENV_URL} when set, else embedded in a temporary "
        "directory (stopped at the end).",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=defaults.requests,
        help=f"sequential requests per case and side (default {defaults.requests})",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=defaults.users,
        help=f"users and organisations to create (default {defaults.users})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=defaults.rounds,
        help="interleaved rounds the requests are split into, alternating which side goes "
        f"first (default {defaults.rounds})",
    )
    parser.add_argument(
        "--show-sql",
        action="store_true",
        help="print the SQL the app sends for each measured endpoint",
    )
    parser.add_argument(
        "--lots",
        type=int,
        default=defaults.lots,
        help=f"lots in the generated data set (shares, listing-read; default {defaults.lots})",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=defaults.records,
        help=f"sourcing records over those lots (default {defaults.records})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        help="listing-read: seconds of load per side and round; search: the saturating rate "
        "of each query class is found over half of it, then each round loads at half that "
        "rate for the other half and gives each in-process side an eighth "
        f"(default {defaults.duration})",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=defaults.connections,
        help="listing-read, search: concurrent connections of the load generator "
        f"(default {defaults.connections})",
    )
    parser.add_argument(
        "--listings",
        type=int,
        default=defaults.listings,
        help=f"search: generated listing documents (default {defaults.listings:,}; the issue's "
        "targets are stated for 1000000, which takes half an hour to an hour to load)",
    )
    parser.add_argument(
        "--buyers",
        type=int,
        default=defaults.buyers,
        help="trading: buyers ordering at once, and listings of the spread side (default "
        f"{defaults.buyers})",
    )
    parser.add_argument(
        "--bids",
        type=_sizes,
        default=defaults.bids,
        metavar="N[,N...]",
        help="trading: sealed bids of each auction cleared (default "
        f"{','.join(map(str, defaults.bids))})",
    )
    parser.add_argument(
        "--lines",
        type=int,
        default=defaults.statement_lines,
        help=f"statement: lines per bank statement (default {defaults.statement_lines:,})",
    )
    parser.add_argument(
        "--payments",
        type=int,
        default=defaults.payments,
        help=f"statement: pending payments the lines pay (default {defaults.payments:,})",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for flag in (
        "requests",
        "users",
        "rounds",
        "lots",
        "records",
        "connections",
        "listings",
        "lines",
        "payments",
    ):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if args.buyers < 1:
        parser.error("--buyers must be at least 1")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    options = Options(
        requests=args.requests,
        users=args.users,
        rounds=args.rounds,
        show_sql=args.show_sql,
        lots=args.lots,
        records=args.records,
        duration=args.duration,
        connections=args.connections,
        listings=args.listings,
        buyers=args.buyers,
        bids=args.bids,
        statement_lines=args.lines,
        payments=args.payments,
    )
    return args.names or list(BENCHMARKS), options


def main(argv: list[str] | None = None) -> int:
    names, options = parse(sys.argv[1:] if argv is None else argv)
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        try:
            module.run(options)
        except KeyboardInterrupt:
            err.print("interrupted")
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
