"""API conventions every domain uses: problem+json, field errors, limits, request ids,
idempotency keys and cursor pagination."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import httpx
from sqlalchemy import func, select

from market.organisations.models import Organisation
from tests.factories import bearer, make_org, make_user, member_with_token, token_for

ORG_BODY = {"kind": "buyer", "name_zh": "天津滨海果品批发有限公司", "region_code": "120116"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for member in ("type", "title", "status", "detail", "code"):
        assert member in body, member
    assert body["status"] == status
    assert body["type"].endswith(body["code"])
    if code:
        assert body["code"] == code
    return body


async def test_unknown_route_is_a_problem(client):
    body = assert_problem(await client.get("/nowhere"), 404, "not_found")
    assert "/nowhere" in body["detail"]


async def test_validation_error_names_each_field(client, session):
    user = await make_user(session)
    token = await token_for(session, user)
    response = await client.post(
        "/organisations",
        headers=bearer(token),
        json={"kind": "bank", "name_zh": "某", "region_code": "62042", "colour": "red"},
    )
    body = assert_problem(response, 422, "validation_failed")
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"kind", "name_zh", "region_code", "colour"}
    colour = next(e for e in body["errors"] if e["field"] == "colour")
    assert "unknown field" in colour["message"]
    count = await session.scalar(select(func.count()).select_from(Organisation))
    assert count == 0


async def test_business_rule_error_names_the_field(client, session):
    user = await make_user(session)
    response = await client.post(
        "/organisations",
        headers=bearer(await token_for(session, user)),
        json={**ORG_BODY, "region_code": "999999"},
    )
    body = assert_problem(response, 422, "unknown_region")
    assert body["errors"] == [{"field": "region_code", "message": "Unknown region code 999999."}]


async def test_page_size_is_bounded(client, session):
    user = await make_user(session)
    token = await token_for(session, user)
    body = assert_problem(
        await client.get("/organisations?limit=100000", headers=bearer(token)), 422
    )
    assert body["errors"][0]["field"] == "limit"
    assert body["errors"][0]["in"] == "query"
    assert (await client.get("/organisations?limit=100", headers=bearer(token))).status_code == 200
    assert_problem(await client.get("/organisations?limit=0", headers=bearer(token)), 422)


async def test_cursor_pagination_walks_every_item_once(client, session):
    user = await make_user(session)
    created = {(await make_org(session, owner=user, verified=False)).id for _ in range(5)}
    token = await token_for(session, user)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/organisations", params=params, headers=bearer(token))).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(str(i) for i in created)
    broken = await client.get("/organisations?cursor=garbage!", headers=bearer(token))
    assert assert_problem(broken, 422)["errors"][0]["field"] == "cursor"
    # forged cursors never reach the database: a time that overflows in another zone, a time
    # without one, a NUL, a number past a bigint (the public listings are keyed by time)
    anyone = str(uuid.uuid4())
    for forged in (
        ["0001-01-01T00:00:00+05:00", anyone],
        ["9999-12-31T23:59:59-05:00", anyone],
        ["2026-12-01T10:00:00", anyone],
        ["2026-12-01T10:00:00+00:00", "\x00"],
        [str(2**70), anyone],
    ):
        cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        refused = await client.get("/listings", params={"cursor": cursor})
        assert assert_problem(refused, 422)["errors"][0]["field"] == "cursor", forged


async def test_oversized_body_is_413(client, settings, session):
    user = await make_user(session)
    token = await token_for(session, user)
    big = json.dumps({**ORG_BODY, "description": "枸" * settings.max_body_bytes})
    response = await client.post(
        "/organisations",
        headers=bearer(token) | {"content-type": "application/json"},
        content=big,
    )
    assert_problem(response, 413, "body_too_large")

    async def chunked():
        for _ in range(settings.max_body_bytes // 1000 + 2):
            yield b"x" * 1000

    streamed = await client.post(
        "/organisations",
        headers=bearer(token) | {"content-type": "application/json"},
        content=chunked(),
    )
    assert_problem(streamed, 413, "body_too_large")
    assert await session.scalar(select(func.count()).select_from(Organisation)) == 0


async def test_request_id_is_echoed_or_made(client):
    given = await client.get("/healthz", headers={"X-Request-ID": "trace-abc-123"})
    assert given.headers["x-request-id"] == "trace-abc-123"
    made = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces"
    assert len(made.headers["x-request-id"]) == 32
    problem = (await client.get("/nowhere", headers={"X-Request-ID": "r-1"})).json()
    assert problem["request_id"] == "r-1"


async def test_openapi_has_tags_descriptions_and_examples(client):
    spec = (await client.get("/openapi.json")).json()
    tags = {t["name"] for t in spec["tags"]}
    assert {"accounts", "organisations", "members", "regions", "platform"} <= tags
    create = spec["paths"]["/organisations"]["post"]
    assert create["summary"] and create["description"]
    schema = spec["components"]["schemas"]["OrganisationCreate"]
    assert schema["examples"][0]["name_zh"] == "靖远县枸杞种植专业合作社"
    params = {p["name"] for p in create["parameters"]}
    assert "Idempotency-Key" in params


# ---------------------------------------------------------------- idempotency


async def test_idempotent_replay_returns_the_first_response(client, session):
    user = await make_user(session)
    token = await token_for(session, user)
    headers = bearer(token) | {"Idempotency-Key": "create-org-1"}
    first = await client.post("/organisations", headers=headers, json=ORG_BODY)
    assert first.status_code == 201
    again = await client.post("/organisations", headers=headers, json=ORG_BODY)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await session.scalar(select(func.count()).select_from(Organisation)) == 1


async def test_same_key_different_body_is_422(client, session):
    user = await make_user(session)
    token = await token_for(session, user)
    headers = bearer(token) | {"Idempotency-Key": "k-2"}
    assert (await client.post("/organisations", headers=headers, json=ORG_BODY)).status_code == 201
    other = await client.post(
        "/organisations", headers=headers, json={**ORG_BODY, "name_zh": "另一家公司"}
    )
    body = assert_problem(other, 422, "idempotency_key_mismatch")
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert await session.scalar(select(func.count()).select_from(Organisation)) == 1


async def test_keys_belong_to_the_caller(client, session):
    one, two = await make_user(session), await make_user(session)
    for user in (one, two):
        headers = bearer(await token_for(session, user)) | {"Idempotency-Key": "shared"}
        assert (
            await client.post("/organisations", headers=headers, json=ORG_BODY)
        ).status_code == 201
    assert await session.scalar(select(func.count()).select_from(Organisation)) == 2


async def test_failed_request_does_not_burn_the_key(client, session):
    user = await make_user(session)
    headers = bearer(await token_for(session, user)) | {"Idempotency-Key": "retry-me"}
    bad = await client.post(
        "/organisations", headers=headers, json={**ORG_BODY, "region_code": "999999"}
    )
    assert bad.status_code == 422
    good = await client.post(
        "/organisations", headers=headers, json={**ORG_BODY, "region_code": "999999"}
    )
    assert good.status_code == 422  # still executed, not replayed
    assert "idempotent-replayed" not in good.headers


async def test_concurrent_duplicates_have_one_effect(committing_client, committing_session):
    user = await make_user(committing_session)
    token = await token_for(committing_session, user)
    await committing_session.commit()
    headers = bearer(token) | {"Idempotency-Key": "burst-1"}
    responses = await asyncio.gather(
        *[
            committing_client.post("/organisations", headers=headers, json=ORG_BODY)
            for _ in range(8)
        ]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(1 for r in responses if r.headers.get("idempotent-replayed")) == 7
    count = await committing_session.scalar(
        select(func.count())
        .select_from(Organisation)
        .where(Organisation.name_zh == ORG_BODY["name_zh"])
    )
    assert count == 1


async def test_concurrent_requests_without_key_each_act(committing_client, committing_session):
    """The control for the test above: without a key the same burst creates eight."""
    _, _, token = await member_with_token(committing_session)
    await committing_session.commit()
    responses = await asyncio.gather(
        *[
            committing_client.post("/organisations", headers=bearer(token), json=ORG_BODY)
            for _ in range(8)
        ]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 8


async def test_a_nul_anywhere_is_a_422_naming_the_field_not_a_500(client, session):
    """PostgreSQL refuses a NUL in text: every request body refuses control characters (the
    shared `market.inputs.Input`), and the public query parameters that reach SQL as text do
    too."""
    user = await make_user(session)
    token = await token_for(session, user)
    body = {**ORG_BODY, "name_zh": "天津\u0000果品"}
    refused = await client.post("/organisations", headers=bearer(token), json=body)
    assert assert_problem(refused, 422)["errors"][0]["field"] == "name_zh"
    assert await session.scalar(select(func.count()).select_from(Organisation)) == 0
    for url, field in (("/listings?category=%00", "category"), ("/regions?q=a%00", "q")):
        response = await client.get(url)
        assert assert_problem(response, 422)["errors"][0]["field"] == field, url
    assert (await client.get("/trace/620421-%00")).status_code == 404
