"""Typed dependencies: the request's session, the caller, idempotency, search and payments."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Header, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from market.config import Settings
from market.errors import Forbidden, Unauthorized
from market.idempotency import service as idempotency_service
from payments.base import PaymentProvider
from search.base import ListingSearch


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit when the handler returns, roll back on any error.

    Used with scope="function" so the commit happens before the response is sent: a client
    never sees success for a transaction that failed to commit.
    """
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                # on PostgreSQL, the search rows of changed listings commit with the change
                # (the hook is set by create_app: deps imports no domain service)
                await request.app.state.before_commit(session, request.app.state.search)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# Dependencies that only read app state are `async def`: FastAPI runs a plain `def` dependency
# in a worker thread, a thread hop per request for nothing.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_search(request: Request) -> ListingSearch:
    engine: ListingSearch = request.app.state.search
    return engine


async def get_payments(request: Request) -> Mapping[str, PaymentProvider]:
    """The configured payment providers by name ("offline", and "stripe" when configured)."""
    providers: Mapping[str, PaymentProvider] = request.app.state.payments
    return providers


SearchDep = Annotated[ListingSearch, Depends(get_search)]
PaymentsDep = Annotated[Mapping[str, PaymentProvider], Depends(get_payments)]


# ---------------------------------------------------------------- who is calling

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/auth/token",
    auto_error=False,
    description="A user's bearer token from /auth/token, or an organisation API key (agk_…).",
)


@dataclass(frozen=True)
class Principal:
    """The caller: a user (with a bearer token) or an organisation's API key with scopes."""

    user_id: uuid.UUID | None = None
    token_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    api_key_organisation_id: uuid.UUID | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    @property
    def idempotency_scope(self) -> str:
        return f"key:{self.api_key_id}" if self.is_api_key else f"user:{self.user_id}"


async def current_principal(
    session: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    from market.accounts import service as accounts_service

    if not token:
        raise Unauthorized("Sign in first: send 'Authorization: Bearer <token>'.")
    return await accounts_service.resolve_bearer(session, token)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def current_user_id(principal: PrincipalDep) -> uuid.UUID:
    if principal.user_id is None:
        raise Forbidden("This action needs a user's sign-in, not an API key.", code="user_required")
    return principal.user_id


CurrentUserId = Annotated[uuid.UUID, Depends(current_user_id)]


# ---------------------------------------------------------------- idempotency


def idempotent(
    *, required: bool = False
) -> Callable[..., Coroutine[Any, Any, idempotency_service.Claim | None]]:
    """Honour an Idempotency-Key on this POST; `required` for stock- and money-moving routes."""

    async def dependency(
        request: Request,
        session: SessionDep,
        principal: PrincipalDep,
        settings: SettingsDep,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias=idempotency_service.HEADER,
                description="Any unique string (a UUID is ideal). A retry with the same key "
                "and body returns the first response instead of acting twice.",
            ),
        ] = None,
    ) -> idempotency_service.Claim | None:
        if idempotency_key is None:
            if required:
                from market.errors import Invalid

                raise Invalid.field(
                    idempotency_service.HEADER,
                    "This request moves stock or money and needs an Idempotency-Key header.",
                    code="idempotency_key_required",
                )
            return None
        claim = await idempotency_service.claim(
            session,
            principal=principal.idempotency_scope,
            key=idempotency_key,
            method=request.method,
            path=request.url.path,
            body=await request.body(),
            # the same body under other parameters (?encoding=gbk) is another request
            query=urlencode(sorted(request.query_params.multi_items())),
            ttl=dt.timedelta(hours=settings.idempotency_ttl_hours),
        )
        request.state.idempotency_claim = claim
        return claim

    return dependency


Idempotent = Annotated[idempotency_service.Claim | None, Depends(idempotent())]
