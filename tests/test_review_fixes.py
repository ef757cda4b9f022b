"""Regression tests for defects found in review: a rejected cooperative's listings, households
of another prefecture, API keys adjusting stock, required names, officials reading records."""

from __future__ import annotations

import uuid

from market.errors import Conflict
from market.listings import service as listings_service
from tests.factories import bearer, member_with_token, platform_operator
from tests.factories_households import registered_household
from tests.factories_listings import make_listing, make_supply


async def test_a_rejected_cooperatives_listings_vanish_and_cannot_be_bought(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    assert (await client.get(f"/listings/{listing.id}")).status_code == 200
    _, platform_token = await platform_operator(session)
    rejected = await client.post(
        f"/platform/organisations/{supply.cooperative.id}/reject",
        headers=bearer(platform_token),
        json={"reason": "合作社营业执照已吊销"},
    )
    assert rejected.status_code == 200
    assert (await client.get(f"/listings/{listing.id}")).status_code == 404
    assert str(listing.id) not in [i["id"] for i in (await client.get("/listings")).json()["items"]]
    try:
        await listings_service.reserve(
            session, listing_id=listing.id, quantity=1, reason="order", reference="o-1"
        )
    except Conflict as exc:
        assert exc.code == "cooperative_not_verified"
    else:  # pragma: no cover - the defect
        raise AssertionError("a rejected cooperative's listing was reserved")


async def test_cooperatives_link_households_of_their_own_prefecture_only(client, session, settings):
    _, coop, token = await member_with_token(session, region_code="620421")
    far = await registered_household(session, key=settings.hashing_key(), county_code="110101")
    near = await registered_household(
        session, key=settings.hashing_key(), county_code="620422", serial=2
    )
    ok = await client.post(
        f"/organisations/{coop.id}/households/link",
        headers=bearer(token),
        json={"registry_id": near.registry_id, "joined_on": "2024-01-01"},
    )
    assert ok.status_code == 201, ok.text  # 会宁县 is in 白银市 like 靖远县
    response = await client.post(
        f"/organisations/{coop.id}/households/link",
        headers=bearer(token),
        json={"registry_id": far.registry_id, "joined_on": "2024-01-01"},
    )
    assert response.status_code == 422, response.text
    unknown = await client.post(
        f"/organisations/{coop.id}/households/link",
        headers=bearer(token),
        json={"registry_id": "620421-NOSUCH", "joined_on": "2024-01-01"},
    )
    # the same answer for "elsewhere" and "unknown": the registry cannot be probed
    assert unknown.json()["code"] == response.json()["code"] == "unknown_registry_id"


async def test_an_api_key_with_listings_write_adjusts_stock(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    created = await client.post(
        f"/organisations/{supply.cooperative.id}/api-keys",
        headers=bearer(supply.token),
        json={"name": "仓储系统", "scopes": ["listings:write"]},
    )
    secret = created.json()["key"]
    response = await client.post(
        f"/organisations/{supply.cooperative.id}/listings/{listing.id}/stock-adjustments",
        headers=bearer(secret) | {"Idempotency-Key": str(uuid.uuid4())},
        json={"quantity": -2, "reason": "盘点破损"},
    )
    assert response.status_code == 201, response.text


async def test_an_organisation_name_cannot_be_cleared(client, session):
    _, organisation, token = await member_with_token(session)
    response = await client.patch(
        f"/organisations/{organisation.id}", headers=bearer(token), json={"name_zh": None}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "name_zh"


async def test_officials_read_records_of_lots_in_their_regions(client, session):
    supply = await make_supply(session)
    _, platform_token = await platform_operator(session)
    _, authority, authority_token = await member_with_token(
        session, kind="authority", region_code="620400"
    )
    _, far, far_token = await member_with_token(session, kind="authority", region_code="640000")
    for org, code in ((authority, "620400"), (far, "640000")):
        await client.put(
            f"/platform/organisations/{org.id}/audit-regions",
            headers=bearer(platform_token),
            json={"region_codes": [code]},
        )
    url = f"/authority/lots/{supply.lot.id}/records"
    mine = await client.get(url, headers=bearer(authority_token))
    assert mine.status_code == 200 and len(mine.json()["items"]) == 2
    assert "head_name" not in mine.text
    assert (await client.get(url, headers=bearer(far_token))).status_code == 404
    assert (await client.get(url, headers=bearer(supply.token))).status_code == 403


async def test_crafted_cursors_and_huge_record_numbers_are_422(client, session):
    import base64
    import json

    supply = await make_supply(session)
    cursor = base64.urlsafe_b64encode(json.dumps(["x", 5]).encode()).decode().rstrip("=")
    response = await client.get(
        f"/organisations/{supply.cooperative.id}/lots",
        params={"cursor": cursor},
        headers=bearer(supply.token),
    )
    assert response.status_code == 422
    huge = await client.post(
        f"/organisations/{supply.cooperative.id}/lots/{supply.lot.id}/records/{2**64}/reverse",
        headers=bearer(supply.token) | {"Idempotency-Key": "k"},
        json={"reason": "too big"},
    )
    assert huge.status_code == 422


async def test_the_public_listing_read_answers_get_only(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    head = await client.head(f"/listings/{listing.id}")
    assert head.status_code == 405
    assert head.headers["allow"] == "GET"
    assert (await client.get(f"/listings/{listing.id}")).status_code == 200


async def test_officials_narrow_lots_by_region_but_never_widen(client, session):
    supply = await make_supply(session)  # a cooperative in 靖远县 620421
    _, platform_token = await platform_operator(session)
    _, authority, token = await member_with_token(session, kind="authority", region_code="620400")
    await client.put(
        f"/platform/organisations/{authority.id}/audit-regions",
        headers=bearer(platform_token),
        json={"region_codes": ["620400"]},
    )

    async def lots(region: str | None, who: str = token) -> list[str]:
        params = {"region_code": region} if region else {}
        response = await client.get("/authority/lots", params=params, headers=bearer(who))
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    mine = [str(supply.lot.id)]
    assert await lots(None) == mine
    assert await lots("620421") == mine
    assert await lots("620422") == []
    assert await lots("620000") == mine  # wider than the scope: still only the scope
    assert await lots("110000") == []
    assert str(supply.lot.id) in await lots(None, platform_token)
