"""Cursor pagination with a bounded page size, shared by every list endpoint."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from market.errors import Invalid

MAX_LIMIT = 100
DEFAULT_LIMIT = 20

T = TypeVar("T")


class PageParams(BaseModel):
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


async def page_params(  # async: FastAPI runs a plain `def` dependency in a thread
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}.")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The `next_cursor` of the previous page."),
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


PageDep = Annotated[PageParams, Depends(page_params)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


def _encode(values: list[Any]) -> str:
    raw = json.dumps(
        [v.isoformat() if isinstance(v, dt.datetime) else str(v) for v in values]
    ).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, kinds: list[type]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError
        out: list[Any] = []
        for kind, part in zip(kinds, parts, strict=True):
            if not isinstance(part, str) or "\x00" in part:
                raise ValueError
            if kind is dt.datetime:
                # with a time zone, in UTC: a time near year 1 or 9999 in another zone would
                # overflow in the driver (a 500), as would a time PostgreSQL reads otherwise
                at = dt.datetime.fromisoformat(part)
                if at.tzinfo is None:
                    raise ValueError
                out.append(at.astimezone(dt.UTC))
            elif kind is uuid.UUID:
                out.append(uuid.UUID(part))
            elif kind is int:
                number = int(part)
                if not -(2**63) <= number < 2**63:  # a bigint key
                    raise ValueError
                out.append(number)
            else:
                out.append(kind(part))
        return out
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise Invalid.field("cursor", "This cursor is not valid; start again without it.") from exc


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    params: PageParams,
    keys: list[InstrumentedAttribute[Any]],
    *,
    descending: bool = False,
) -> tuple[list[Any], str | None]:
    """Keyset pagination over `keys` (the last one unique); returns rows and the next cursor."""
    kinds = [k.type.python_type for k in keys]
    if params.cursor:
        values = _decode(params.cursor, kinds)
        cmp = tuple_(*keys) < tuple_(*values) if descending else tuple_(*keys) > tuple_(*values)
        stmt = stmt.where(cmp)
    order = [k.desc() for k in keys] if descending else [k.asc() for k in keys]
    rows = list((await session.scalars(stmt.order_by(*order).limit(params.limit + 1))).all())
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        next_cursor = _encode([getattr(last, k.key) for k in keys])
    return rows, next_cursor
