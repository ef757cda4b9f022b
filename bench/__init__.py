"""AgriBridge benchmarks: `python -m bench` (or `make bench`).

Every benchmark prints its figures as a ratio against a baseline measured in the same run
(for example the same SQL through raw asyncpg), never as an absolute time to compare with
another machine: these machines are shared and noisy.
"""

from __future__ import annotations

# name on the command line -> module in this package with `run(options) -> None`
BENCHMARKS: dict[str, str] = {
    "api-overhead": "bench.api_overhead",
    "shares": "bench.shares",
    "listing-read": "bench.listing_read",
    "search": "bench.search",
    "clearing": "bench.clearing",
    "trading": "bench.trading",
    "statement": "bench.statement",
}
