"""Registration, sign-in, bearer tokens and API keys."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from market.accounts import security
from market.accounts.models import AccessToken, ApiKey, User
from market.db import utcnow
from market.deps import Principal
from market.errors import Conflict, Invalid, NotFound, Unauthorized

# What an API key may be allowed to do. Later domains add their scopes here.
API_KEY_SCOPES: dict[str, str] = {
    "organisation:read": "Read the organisation's profile.",
    "members:read": "List the organisation's members.",
    "households:read": "Read the cooperative's member households (masked).",
    "households:write": "Link and unlink member households.",
    "catalog:read": "Read products and certifications.",
    "catalog:write": "Create and change products and certifications.",
    "sourcing:read": "Read lots, sourcing records and shares.",
    "sourcing:write": "Open lots and append sourcing records and corrections.",
    "listings:read": "Read the organisation's listings and stock movements.",
    "listings:write": "Create, publish, change and close listings; adjust stock.",
    "orders:read": "Read the buyer's orders, or the cooperative's fulfilments.",
    "orders:write": "Place and cancel orders, confirm delivery; pack and ship fulfilments.",
}

_TOUCH_EVERY = dt.timedelta(minutes=5)


async def register(session: AsyncSession, *, email: str, password: str, display_name: str) -> User:
    email = email.strip()
    taken = await session.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
    if taken is not None:
        raise Conflict(
            "An account with this e-mail address already exists; sign in instead.",
            code="email_taken",
            errors=[{"field": "email", "message": "already registered"}],
        )
    user = User(
        email=email, display_name=display_name, password_hash=security.hash_password(password)
    )
    session.add(user)
    await session.flush()
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    user = await find_user_by_email(session, email)
    ok = security.verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        raise Unauthorized("The e-mail address or the password is wrong.", code="bad_credentials")
    if security.needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    user.last_login_at = utcnow()
    return user


async def issue_token(
    session: AsyncSession, *, user: User, ttl: dt.timedelta
) -> tuple[str, AccessToken]:
    secret = security.new_secret(security.TOKEN_PREFIX)
    token = AccessToken(
        user_id=user.id, token_hash=security.secret_hash(secret), expires_at=utcnow() + ttl
    )
    session.add(token)
    await session.flush()
    return secret, token


async def revoke_token(session: AsyncSession, token_id: uuid.UUID) -> None:
    await session.execute(
        update(AccessToken)
        .where(AccessToken.id == token_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def resolve_bearer(session: AsyncSession, raw: str) -> Principal:
    """Turn a bearer secret into the caller, or refuse with one message for every failure."""
    now = utcnow()
    digest = security.secret_hash(raw)
    if raw.startswith(security.API_KEY_PREFIX):
        key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        if key is None or key.revoked_at is not None or (key.expires_at and key.expires_at <= now):
            raise Unauthorized("This API key is not valid (unknown, revoked or expired).")
        if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
            key.last_used_at = now
        return Principal(
            api_key_id=key.id,
            api_key_organisation_id=key.organisation_id,
            scopes=frozenset(key.scopes),
        )
    token = await session.scalar(select(AccessToken).where(AccessToken.token_hash == digest))
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        raise Unauthorized(
            "Your sign-in is not valid any more (unknown, expired or signed out); sign in again.",
            code="invalid_token",
        )
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        token.last_used_at = now
    return Principal(user_id=token.user_id, token_id=token.id)


# ---------------------------------------------------------------- API keys


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in API_KEY_SCOPES]
    if unknown:
        raise Invalid(
            f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(sorted(API_KEY_SCOPES))}.",
            code="unknown_scope",
            errors=[{"field": "scopes", "message": f"unknown scope {s}"} for s in unknown],
        )
    return sorted(set(scopes))


async def create_api_key(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    name: str,
    scopes: list[str],
    created_by_id: uuid.UUID | None,
    expires_at: dt.datetime | None,
) -> tuple[str, ApiKey]:
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid.field("expires_at", "The expiry must be in the future.")
    secret = security.new_secret(security.API_KEY_PREFIX)
    key = ApiKey(
        organisation_id=organisation_id,
        name=name,
        prefix=secret[:12],
        key_hash=security.secret_hash(secret),
        scopes=check_scopes(scopes),
        created_by_id=created_by_id,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    await session.refresh(key)
    return secret, key


async def list_api_keys(session: AsyncSession, organisation_id: uuid.UUID) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.organisation_id == organisation_id).order_by(ApiKey.created_at)
    )
    return list(rows)


async def revoke_api_key(
    session: AsyncSession, *, organisation_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey:
    key = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.organisation_id == organisation_id)
    )
    if key is None:
        raise NotFound("No such API key in this organisation.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key
