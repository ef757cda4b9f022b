"""HTTP: register, sign in and out, who am I, and organisation API keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from market.accounts import service
from market.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    MembershipRead,
    MeRead,
    TokenRead,
    UserCreate,
    UserRead,
)
from market.deps import CurrentUserId, PrincipalDep, SessionDep, SettingsDep
from market.errors import Invalid
from market.organisations import service as organisations_service
from market.routing import MarketRoute

router = APIRouter(route_class=MarketRoute)


@router.post(
    "/auth/register",
    tags=["accounts"],
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    summary="Create an account",
)
async def register(body: UserCreate, session: SessionDep) -> UserRead:
    """Create a user account with an e-mail and password. Join or create an organisation next."""
    user = await service.register(
        session, email=body.email, password=body.password, display_name=body.display_name
    )
    return UserRead.model_validate(user)


@router.post("/auth/token", tags=["accounts"], response_model=TokenRead, summary="Sign in")
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> TokenRead:
    """OAuth2 password flow: `username` is the e-mail. Returns an opaque bearer token."""
    if not form.username or not form.password:
        raise Invalid.field("username", "Give the e-mail as username and the password.")
    user = await service.authenticate(session, email=form.username, password=form.password)
    ttl = dt.timedelta(minutes=settings.access_token_ttl_minutes)
    secret, issued = await service.issue_token(session, user=user, ttl=ttl)
    return TokenRead(
        access_token=secret, expires_in=int(ttl.total_seconds()), expires_at=issued.expires_at
    )


@router.post(
    "/auth/logout",
    tags=["accounts"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out (revoke this token)",
)
async def logout(principal: PrincipalDep, session: SessionDep, _: CurrentUserId) -> Response:
    assert principal.token_id is not None
    await service.revoke_token(session, principal.token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", tags=["accounts"], response_model=MeRead, summary="Who am I")
async def me(principal: PrincipalDep, session: SessionDep) -> MeRead:
    """The signed-in user and their organisations and roles (or the API key in use)."""
    if principal.is_api_key:
        assert principal.api_key_organisation_id is not None and principal.api_key_id is not None
        keys = await service.list_api_keys(session, principal.api_key_organisation_id)
        key = next(k for k in keys if k.id == principal.api_key_id)
        organisation = await organisations_service.access(
            session, principal, principal.api_key_organisation_id, scope="organisation:read"
        )
        org = organisation.organisation
        return MeRead(
            user=None,
            memberships=[
                MembershipRead(
                    organisation_id=org.id,
                    organisation_name_zh=org.name_zh,
                    organisation_kind=org.kind,
                    verification_status=org.verification_status,
                    role="staff",
                )
            ],
            api_key=ApiKeyRead.model_validate(key),
        )
    assert principal.user_id is not None
    user = await service.get_user(session, principal.user_id)
    memberships = await organisations_service.memberships_of(session, user.id)
    return MeRead(
        user=UserRead.model_validate(user),
        memberships=[
            MembershipRead(
                organisation_id=org.id,
                organisation_name_zh=org.name_zh,
                organisation_kind=org.kind,
                verification_status=org.verification_status,
                role=role,
            )
            for org, role in memberships
        ],
    )


@router.get(
    "/api-keys/scopes",
    tags=["api keys"],
    summary="Scopes an API key can have",
    response_model=dict[str, str],
)
async def scopes() -> dict[str, str]:
    return service.API_KEY_SCOPES


@router.post(
    "/organisations/{organisation_id}/api-keys",
    tags=["api keys"],
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    summary="Create an API key (owner)",
)
async def create_api_key(
    organisation_id: uuid.UUID,
    body: ApiKeyCreate,
    principal: PrincipalDep,
    session: SessionDep,
) -> ApiKeyCreated:
    """The secret is in the response once and never again; only its hash is kept."""
    await organisations_service.access(session, principal, organisation_id, role="owner")
    secret, key = await service.create_api_key(
        session,
        organisation_id=organisation_id,
        name=body.name,
        scopes=body.scopes,
        created_by_id=principal.user_id,
        expires_at=body.expires_at,
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=secret)


@router.get(
    "/organisations/{organisation_id}/api-keys",
    tags=["api keys"],
    response_model=list[ApiKeyRead],
    summary="List API keys (owner)",
)
async def list_api_keys(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> list[ApiKeyRead]:
    await organisations_service.access(session, principal, organisation_id, role="owner")
    return [
        ApiKeyRead.model_validate(k) for k in await service.list_api_keys(session, organisation_id)
    ]


@router.delete(
    "/organisations/{organisation_id}/api-keys/{key_id}",
    tags=["api keys"],
    response_model=ApiKeyRead,
    summary="Revoke an API key (owner)",
)
async def revoke_api_key(
    organisation_id: uuid.UUID, key_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ApiKeyRead:
    await organisations_service.access(session, principal, organisation_id, role="owner")
    key = await service.revoke_api_key(session, organisation_id=organisation_id, key_id=key_id)
    return ApiKeyRead.model_validate(key)
