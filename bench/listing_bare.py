"""The listing-read baseline: `GET /listings/{id}` as a bare Starlette endpoint on an asyncpg pool.

Started by bench/listing_read.py as its own process under uvicorn, configured like `market
serve` (one process, no access log, no server header), with:

    BENCH_DATABASE_URL   the database (libpq form)
    BENCH_LISTING_SQL    the statement the app sends for the same request (recorded from it)
    BENCH_LISTING_PARAMS its positional parameters by name, e.g. "today,listing_id"
    BENCH_POOL_SIZE      connections at most (the app's engine: pool_size + max_overflow)

It answers the same JSON document as market.listings.service.public_listing, built by hand
from the row: what an endpoint written straight on asyncpg would do. Nothing else runs per
request: no middleware, no session or transaction, no validation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CHINA_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
KNOWN_PARAMS = ("listing_id", "today")


def share_bp(part: int, whole: int) -> int | None:
    """part / whole in basis points, rounded half-even; None without a whole (integers only)."""
    if whole <= 0:
        return None
    quotient, remainder = divmod(part * 10_000, whole)
    if 2 * remainder > whole or (2 * remainder == whole and quotient % 2):
        quotient += 1
    return quotient


def document(row: asyncpg.Record, today: dt.date) -> dict[str, Any]:
    certifications = []
    if row["cert_ids"]:
        for cid, kind, number, issuer, valid_until in zip(
            row["cert_ids"],
            row["cert_kinds"],
            row["cert_numbers"],
            row["cert_issuers"],
            row["cert_valid_until"],
            strict=True,
        ):
            certifications.append(
                {
                    "id": cid,
                    "kind": kind,
                    "certificate_number": number,
                    "issuer": issuer,
                    "valid_until": valid_until,
                    "is_valid": valid_until >= today,
                }
            )
    tiers = []
    if row["tier_quantities"]:
        tiers = [
            {"min_quantity": q, "unit_price_fen": p}
            for q, p in zip(row["tier_quantities"], row["tier_prices"], strict=True)
        ]
    return {
        "id": row["id"],
        "title_zh": row["title_zh"],
        "title_en": row["title_en"],
        "description": row["description"],
        "cooperative": {
            "id": row["cooperative_id"],
            "name_zh": row["cooperative_name_zh"],
            "name_en": row["cooperative_name_en"],
        },
        "county": {"code": row["county_code"], "name_zh": row["county_name_zh"]},
        "product": {
            "id": row["product_id"],
            "name_zh": row["product_name_zh"],
            "name_en": row["product_name_en"],
            "category_code": row["category_code"],
            "regional_brand": row["regional_brand"],
            "unit": row["unit"],
            "box_net_weight_g": row["box_net_weight_g"],
            "storage_class": row["storage_class"],
            "shelf_life_days": row["shelf_life_days"],
        },
        "sale_mode": row["sale_mode"],
        "unit_price_fen": row["unit_price_fen"],
        "price_tiers": tiers,
        "min_order_quantity": row["min_order_quantity"],
        "quantity_available": row["quantity_available"],
        "auction_closes_at": row["auction_closes_at"],
        "delivery_terms": row["delivery_terms"],
        "pickup_hub": row["pickup_hub"],
        "valid_from": row["valid_from"],
        "valid_until": row["valid_until"],
        "published_at": row["published_at"],
        "certifications": certifications,
        "certification_warning": row["claimed"] > (row["cert_valid"] or 0),
        "trace_code": row["trace_code"],
        "poor_share_bp": share_bp(int(row["poor_value_fen"] or 0), int(row["value_fen"] or 0)),
    }


def _str(value: object) -> str:
    return str(value)  # asyncpg's own UUID type, which orjson does not know


NOT_FOUND = orjson.dumps(
    {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No such listing, or it is not on sale now.",
    }
)


def create_app(url: str, sql: str, params: list[str], pool_size: int) -> Starlette:
    unknown = [p for p in params if p not in KNOWN_PARAMS]
    if unknown:
        raise SystemExit(f"listing_bare: unknown statement parameters {unknown}")
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        try:
            yield
        finally:
            await pool.close()

    async def get_listing(request: Request) -> Response:
        listing_id: uuid.UUID = request.path_params["listing_id"]
        today = dt.datetime.now(CHINA_TIME).date()
        values = {"listing_id": listing_id, "today": today}
        assert pool is not None
        async with pool.acquire() as conn:
            row = await conn.fetchrow(sql, *[values[p] for p in params])
        if row is None:
            return Response(NOT_FOUND, status_code=404, media_type="application/problem+json")
        body = orjson.dumps(document(row, today), default=_str, option=orjson.OPT_UTC_Z)
        return Response(body, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/listings/{listing_id:uuid}", get_listing),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.listing_bare")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(
        os.environ["BENCH_DATABASE_URL"],
        os.environ["BENCH_LISTING_SQL"],
        os.environ["BENCH_LISTING_PARAMS"].split(","),
        int(os.environ.get("BENCH_POOL_SIZE", "20")),
    )
    # as `market serve` runs the app: one process, no access log, no server header
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
