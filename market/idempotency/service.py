"""Claim an idempotency key inside the request's transaction and store the response with it.

The claim is an INSERT on a unique key: a concurrent duplicate blocks on it until the first
request commits (then it replays the stored response) or rolls back (then it runs itself).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from market.errors import Conflict, Invalid
from market.idempotency.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass
class StoredResponse:
    status_code: int
    body: bytes
    media_type: str


class Replay(Exception):
    """Raised to answer a retried request with the response stored for its key."""

    def __init__(self, stored: StoredResponse) -> None:
        self.stored = stored


@dataclass
class Claim:
    """A key claimed by this request; the response is stored with it before commit."""

    session: AsyncSession
    principal: str
    key: str


def request_hash(method: str, path: str, body: bytes, query: str = "") -> bytes:
    """What makes two requests the same one: method, path, query parameters (sorted: their
    order does not change a request) and body."""
    digest = hashlib.sha256()
    # without parameters, the hash of the three parts alone, as keys stored before had it
    parts = (method.encode(), path.encode(), body) + ((query.encode(),) if query else ())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


async def claim(
    session: AsyncSession,
    *,
    principal: str,
    key: str,
    method: str,
    path: str,
    body: bytes,
    ttl: dt.timedelta,
    query: str = "",
) -> Claim:
    """Claim `key` for this request or raise Replay / Invalid / Conflict."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Invalid.field(
            HEADER, f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable characters."
        )
    fingerprint = request_hash(method, path, body, query)
    # An expired row is taken over by the new request; a live one is left alone.
    inserted = await session.execute(
        text(
            """
            INSERT INTO idempotency_key (principal, key, method, path, request_hash)
            VALUES (:principal, :key, :method, :path, :hash)
            ON CONFLICT (principal, key) DO UPDATE
               SET method = EXCLUDED.method, path = EXCLUDED.path,
                   request_hash = EXCLUDED.request_hash, status_code = NULL,
                   response_body = NULL, response_media_type = NULL, created_at = now()
             WHERE idempotency_key.created_at < now() - CAST(:ttl AS interval)
            RETURNING key
            """
        ),
        {
            "principal": principal,
            "key": key,
            "method": method,
            "path": path,
            "hash": fingerprint,
            "ttl": ttl,
        },
    )
    if inserted.scalar_one_or_none() is not None:
        return Claim(session=session, principal=principal, key=key)
    existing = await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.principal == principal, IdempotencyKey.key == key
        )
    )
    if existing is None:  # pragma: no cover - deleted between the two statements
        raise Conflict("This idempotency key is being reused; retry the request.")
    if existing.request_hash != fingerprint:
        raise Invalid(
            f"This {HEADER} was already used with a different request "
            f"({existing.method} {existing.path}); use a new key for a new request.",
            code="idempotency_key_mismatch",
            errors=[{"field": HEADER, "message": "already used for a different request"}],
        )
    if existing.status_code is None or existing.response_body is None:
        raise Conflict(
            "A request with this idempotency key is still being processed; retry shortly.",
            code="idempotency_in_progress",
        )
    raise Replay(
        StoredResponse(
            status_code=existing.status_code,
            body=existing.response_body,
            media_type=existing.response_media_type or "application/json",
        )
    )


async def complete(claim: Claim, *, status_code: int, body: bytes, media_type: str) -> None:
    """Store the response in the same transaction as the request's effects."""
    await claim.session.execute(
        text(
            """
            UPDATE idempotency_key
               SET status_code = :status, response_body = :body, response_media_type = :media
             WHERE principal = :principal AND key = :key
            """
        ),
        {
            "status": status_code,
            "body": body,
            "media": media_type,
            "principal": claim.principal,
            "key": claim.key,
        },
    )
