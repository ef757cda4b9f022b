"""Register, sign in, /me, sign out, token expiry and revocation, API keys and scopes."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from market.accounts.models import AccessToken, ApiKey, User
from tests.factories import (
    PASSWORD,
    add_member,
    bearer,
    make_user,
    member_with_token,
    token_for,
    unique_email,
)


async def count_users(session: AsyncSession, email: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(User).where(func.lower(User.email) == email.lower())
        )
        or 0
    )


async def test_register_sign_in_me_and_sign_out(client, session):
    email = unique_email("li.na")
    created = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "display_name": "李娜"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["display_name"] == "李娜"
    assert "password" not in created.text

    stored = await session.scalar(select(User).where(User.email == email))
    assert stored is not None and stored.password_hash.startswith("$argon2")

    login = await client.post("/auth/token", data={"username": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    token = body["access_token"]
    # only the hash of the token is stored
    assert token.encode() not in [
        t.token_hash for t in (await session.scalars(select(AccessToken))).all()
    ]

    me = await client.get("/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["user"]["email"] == email
    assert me.json()["memberships"] == []

    out = await client.post("/auth/logout", headers=bearer(token))
    assert out.status_code == 204
    again = await client.get("/me", headers=bearer(token))
    assert again.status_code == 401
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["code"] == "invalid_token"


async def test_email_is_unique_case_insensitively(client, session):
    email = unique_email("Wang")
    await make_user(session, email=email)
    dup = await client.post(
        "/auth/register",
        json={"email": email.upper(), "password": PASSWORD, "display_name": "王芳"},
    )
    assert dup.status_code == 409
    assert dup.json()["code"] == "email_taken"
    assert dup.json()["errors"][0]["field"] == "email"
    assert await count_users(session, email) == 1


async def test_register_refuses_unknown_fields_and_writes_nothing(client, session):
    email = unique_email()
    response = await client.post(
        "/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "x", "is_admin": True},
    )
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["is_admin"]
    assert await count_users(session, email) == 0


async def test_wrong_password_is_401_problem(client, session):
    user = await make_user(session)
    response = await client.post(
        "/auth/token", data={"username": user.email, "password": "wrong-password-1"}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "bad_credentials"
    unknown = await client.post(
        "/auth/token", data={"username": unique_email(), "password": PASSWORD}
    )
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == response.json()["detail"]  # no account enumeration


async def test_expired_token_is_refused(client, session):
    user = await make_user(session)
    token = await token_for(session, user)
    assert (await client.get("/me", headers=bearer(token))).status_code == 200
    await session.execute(
        update(AccessToken)
        .where(AccessToken.user_id == user.id)
        .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    )
    await session.flush()
    response = await client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_missing_and_garbage_tokens(client):
    assert (await client.get("/me")).status_code == 401
    assert (await client.get("/me", headers=bearer("agb_nonsense"))).status_code == 401
    assert (await client.get("/me", headers=bearer("agk_nonsense"))).status_code == 401


async def test_api_key_shown_once_hashed_and_scoped(client, session):
    _, organisation, owner_token = await member_with_token(session)
    created = await client.post(
        f"/organisations/{organisation.id}/api-keys",
        headers=bearer(owner_token),
        json={"name": "ERP 同步", "scopes": ["organisation:read"]},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    assert secret.startswith("agk_")
    stored = await session.scalar(select(ApiKey).where(ApiKey.organisation_id == organisation.id))
    assert stored is not None and secret.encode() not in stored.key_hash
    assert secret.startswith(stored.prefix)

    listed = await client.get(
        f"/organisations/{organisation.id}/api-keys", headers=bearer(owner_token)
    )
    assert listed.status_code == 200
    assert "key" not in listed.json()[0]  # never shown again

    # the scope it has works, the one it lacks is 403
    profile = await client.get(f"/organisations/{organisation.id}", headers=bearer(secret))
    assert profile.status_code == 200
    assert profile.json()["name_zh"] == organisation.name_zh
    members = await client.get(f"/organisations/{organisation.id}/members", headers=bearer(secret))
    assert members.status_code == 403
    assert members.json()["code"] == "missing_scope"
    me = await client.get("/me", headers=bearer(secret))
    assert me.status_code == 200 and me.json()["api_key"]["name"] == "ERP 同步"

    # an API key can never manage keys or act as a user
    more = await client.post(
        f"/organisations/{organisation.id}/api-keys",
        headers=bearer(secret),
        json={"name": "x", "scopes": ["organisation:read"]},
    )
    assert more.status_code == 403
    assert (await client.post("/auth/logout", headers=bearer(secret))).status_code == 403

    naive = await client.post(
        f"/organisations/{organisation.id}/api-keys",
        headers=bearer(owner_token),
        json={"name": "y", "scopes": ["organisation:read"], "expires_at": "2027-01-01T00:00:00"},
    )
    assert naive.status_code == 422, naive.text  # which zone? not a 500
    assert naive.json()["errors"][0]["field"] == "expires_at"

    revoked = await client.delete(
        f"/organisations/{organisation.id}/api-keys/{stored.id}", headers=bearer(owner_token)
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = await client.get(f"/organisations/{organisation.id}", headers=bearer(secret))
    assert after.status_code == 401


async def test_api_key_of_one_organisation_sees_nothing_of_another(client, session):
    _, mine, owner_token = await member_with_token(session)
    _, other, _ = await member_with_token(session, kind="buyer", region_code="110106")
    created = await client.post(
        f"/organisations/{mine.id}/api-keys",
        headers=bearer(owner_token),
        json={"name": "k", "scopes": ["organisation:read", "members:read"]},
    )
    secret = created.json()["key"]
    for path in (f"/organisations/{other.id}", f"/organisations/{other.id}/members"):
        response = await client.get(path, headers=bearer(secret))
        assert response.status_code == 404, path


async def test_unknown_scope_and_past_expiry_are_refused(client, session):
    _, organisation, owner_token = await member_with_token(session)
    bad = await client.post(
        f"/organisations/{organisation.id}/api-keys",
        headers=bearer(owner_token),
        json={"name": "k", "scopes": ["everything"]},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "scopes"
    past = await client.post(
        f"/organisations/{organisation.id}/api-keys",
        headers=bearer(owner_token),
        json={"name": "k", "scopes": ["members:read"], "expires_at": "2020-01-01T00:00:00Z"},
    )
    assert past.status_code == 422
    assert past.json()["errors"][0]["field"] == "expires_at"
    assert (
        await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.organisation_id == organisation.id)
        )
    ) == 0


async def test_staff_cannot_create_api_keys(client, session):
    _, organisation, _ = await member_with_token(session)
    staff = await make_user(session)
    await add_member(session, organisation, staff, "staff")
    response = await client.post(
        f"/organisations/{organisation.id}/api-keys",
        headers=bearer(await token_for(session, staff)),
        json={"name": "k", "scopes": ["members:read"]},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "role_too_low"


async def test_registering_one_address_twice_at_once_is_one_account_and_a_409(
    committing_client, committing_session
):
    """Both requests find the address free; the database's unique index keeps one account,
    and the other request gets a 409, not a 500."""
    email = f"same-moment-{uuid.uuid4().hex[:8]}@example.cn"
    body = {"email": email, "password": PASSWORD, "display_name": "同时"}
    answers = await asyncio.gather(
        *(committing_client.post("/auth/register", json=body) for _ in range(4))
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
    for refused in (r for r in answers if r.status_code == 409):
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] in ("email_taken", "conflict")
