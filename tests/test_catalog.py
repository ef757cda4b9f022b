"""Catalog: categories, a cooperative's products (units, boxes, validation), access between
organisations, roles and API-key scopes, certifications whose validity is computed on read, and
the unit arithmetic other domains rely on."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from market.catalog import service as catalog_service
from market.catalog.models import Certification, Product
from market.errors import NotFound
from tests.factories import add_member, bearer, make_user, member_with_token, token_for
from tests.factories_catalog import (
    FLOUR_KG,
    WOLFBERRY_BOX,
    api_key_for,
    make_certification,
    make_product,
)

TODAY = catalog_service.china_today()
YESTERDAY = TODAY - dt.timedelta(days=1)
NEXT_YEAR = TODAY + dt.timedelta(days=365)


async def _count_products(session, cooperative_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Product)
            .where(Product.cooperative_id == cooperative_id)
        )
        or 0
    )


def _fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


# ---------------------------------------------------------------- categories


async def test_categories_are_public_and_seeded_in_order(client):
    response = await client.get("/catalog/categories")
    assert response.status_code == 200, response.text
    categories = response.json()
    assert len(categories) == 10
    assert categories[0] == {
        "code": "fresh_fruit",
        "name_zh": "新鲜水果",
        "name_en": "Fresh fruit",
        "parent_code": None,
        "position": 10,
    }
    codes = [c["code"] for c in categories]
    assert {"dried_fruit_nuts", "flour_noodles", "meat", "tea"} <= set(codes)
    assert [c["position"] for c in categories] == sorted(c["position"] for c in categories)


# ---------------------------------------------------------------- products


async def test_create_list_get_and_patch_products(client, session):
    _, coop, token = await member_with_token(session)
    path = f"/organisations/{coop.id}/products"

    created = await client.post(path, headers=bearer(token), json=WOLFBERRY_BOX)
    assert created.status_code == 201, created.text
    box = created.json()
    assert box["name_zh"] == "靖远枸杞 特级 500g 礼盒"
    assert box["regional_brand"] == "靖远枸杞"
    assert box["cooperative_id"] == str(coop.id)
    assert (box["unit"], box["box_net_weight_g"], box["base_unit"], box["unit_size"]) == (
        "box",
        500,
        "g",
        500,
    )
    assert box["image_urls"] == ["https://img.jingyuan-coop.cn/gouqi/tj-500g.jpg"]
    assert box["certifications"] == []
    row = await session.get(Product, uuid.UUID(box["id"]))
    assert row is not None and row.name_zh == "靖远枸杞 特级 500g 礼盒"

    flour = await client.post(path, headers=bearer(token), json=FLOUR_KG)
    assert flour.status_code == 201, flour.text
    assert (flour.json()["unit_size"], flour.json()["image_urls"]) == (1000, [])

    # one page each; both were created in the test's one transaction (the same created_at),
    # so only the set is certain, not which comes first
    first = await client.get(path, headers=bearer(token), params={"limit": 1})
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert len(first.json()["items"]) == 1 and cursor
    second = await client.get(path, headers=bearer(token), params={"limit": 1, "cursor": cursor})
    assert second.status_code == 200, second.text
    assert second.json()["next_cursor"] is None
    names = [p["name_zh"] for page in (first, second) for p in page.json()["items"]]
    assert sorted(names) == sorted(["靖远枸杞 特级 500g 礼盒", "和尚头面粉"])
    by_category = await client.get(
        path, headers=bearer(token), params={"category_code": "flour_noodles"}
    )
    assert [p["name_zh"] for p in by_category.json()["items"]] == ["和尚头面粉"]

    one = await client.get(f"{path}/{box['id']}", headers=bearer(token))
    assert one.status_code == 200 and one.json() == box

    patched = await client.patch(
        f"{path}/{box['id']}",
        headers=bearer(token),
        json={"name_zh": "靖远枸杞 特级 250g 礼盒", "box_net_weight_g": 250, "name_en": None},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name_zh"], body["unit_size"], body["name_en"]) == (
        "靖远枸杞 特级 250g 礼盒",
        250,
        None,
    )
    assert body["regional_brand"] == "靖远枸杞"  # untouched
    assert body["updated_at"] >= box["updated_at"]
    await session.refresh(row)
    assert (row.name_zh, row.box_net_weight_g, row.name_en) == (
        "靖远枸杞 特级 250g 礼盒",
        250,
        None,
    )

    # from box to jin: the net weight must go at the same time
    to_jin = await client.patch(
        f"{path}/{box['id']}", headers=bearer(token), json={"unit": "jin", "box_net_weight_g": None}
    )
    assert to_jin.status_code == 200, to_jin.text
    assert (to_jin.json()["unit"], to_jin.json()["unit_size"]) == ("jin", 500)


async def test_staff_may_write(client, session):
    _, coop, _ = await member_with_token(session)
    staff = await make_user(session)
    await add_member(session, coop, staff, "staff")
    response = await client.post(
        f"/organisations/{coop.id}/products",
        headers=bearer(await token_for(session, staff)),
        json=FLOUR_KG,
    )
    assert response.status_code == 201, response.text


async def test_retried_create_with_the_same_idempotency_key_makes_one_product(client, session):
    _, coop, token = await member_with_token(session)
    headers = {**bearer(token), "Idempotency-Key": str(uuid.uuid4())}
    path = f"/organisations/{coop.id}/products"
    first = await client.post(path, headers=headers, json=FLOUR_KG)
    again = await client.post(path, headers=headers, json=FLOUR_KG)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert await _count_products(session, coop.id) == 1


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"unit": "box"}, "box_net_weight_g", "box_needs_weight"),
        ({"unit": "box", "box_net_weight_g": None}, "box_net_weight_g", "box_needs_weight"),
        ({"unit": "kg", "box_net_weight_g": 500}, "box_net_weight_g", "weight_only_for_box"),
        ({"unit": "piece", "box_net_weight_g": 1}, "box_net_weight_g", "weight_only_for_box"),
        ({"category_code": "spaceship_parts"}, "category_code", "unknown_category"),
    ],
)
async def test_unit_and_category_rules_name_the_field_and_write_nothing(
    client, session, changes, field, code
):
    _, coop, token = await member_with_token(session)
    response = await client.post(
        f"/organisations/{coop.id}/products", headers=bearer(token), json={**FLOUR_KG, **changes}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert _fields(response) == {field}
    assert await _count_products(session, coop.id) == 0


async def test_several_broken_rules_are_reported_together(client, session):
    _, coop, token = await member_with_token(session)
    response = await client.post(
        f"/organisations/{coop.id}/products",
        headers=bearer(token),
        json={**FLOUR_KG, "unit": "box", "category_code": "nope"},
    )
    assert response.status_code == 422
    assert _fields(response) == {"box_net_weight_g", "category_code"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"colour": "红"}, "colour"),
        ({"shelf_life_days": 0}, "shelf_life_days"),
        ({"unit": "ton"}, "unit"),
        ({"storage_class": "warm"}, "storage_class"),
        ({"box_net_weight_g": 0, "unit": "box"}, "box_net_weight_g"),
        ({"image_urls": ["ftp://img.example.cn/a.jpg"]}, "image_urls.0"),
        ({"image_urls": [f"https://img.example.cn/{i}.jpg" for i in range(11)]}, "image_urls"),
        ({"name_zh": ""}, "name_zh"),
    ],
)
async def test_malformed_product_input_is_refused_and_nothing_written(
    client, session, changes, field
):
    _, coop, token = await member_with_token(session)
    response = await client.post(
        f"/organisations/{coop.id}/products", headers=bearer(token), json={**FLOUR_KG, **changes}
    )
    assert response.status_code == 422, response.text
    assert field in _fields(response)
    assert await _count_products(session, coop.id) == 0


async def test_patch_refuses_unknown_fields_nulls_and_a_change_of_base_unit(client, session):
    _, coop, token = await member_with_token(session)
    flour = await make_product(session, coop)
    box = await make_product(session, coop, unit="box", box_net_weight_g=500)
    path = f"/organisations/{coop.id}/products"
    cases = [
        (flour, {"colour": "白"}, "colour"),
        (flour, {"name_zh": None}, "name_zh"),
        (flour, {"unit": None}, "unit"),
        (flour, {"category_code": "nope"}, "category_code"),
        (flour, {"unit": "piece"}, "unit"),
        (flour, {"box_net_weight_g": 250}, "box_net_weight_g"),
        (box, {"unit": "kg"}, "box_net_weight_g"),  # the weight must be cleared too
    ]
    for product, body, field in cases:
        response = await client.patch(f"{path}/{product.id}", headers=bearer(token), json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in _fields(response), body
    await session.refresh(flour)
    await session.refresh(box)
    assert (flour.name_zh, flour.unit, flour.category_code) == ("和尚头面粉", "kg", "flour_noodles")
    assert (box.unit, box.box_net_weight_g) == ("box", 500)


async def test_piece_products_stay_pieces(client, session):
    _, coop, token = await member_with_token(session)
    lamb = await make_product(
        session, coop, name_zh="滩羊肉 整羊", category_code="meat", unit="piece",
        storage_class="frozen", shelf_life_days=365,
    )  # fmt: skip
    response = await client.patch(
        f"/organisations/{coop.id}/products/{lamb.id}",
        headers=bearer(token),
        json={"unit": "box", "box_net_weight_g": 20000},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "base_unit_fixed"
    assert _fields(response) == {"unit"}
    await session.refresh(lamb)
    assert (lamb.unit, lamb.box_net_weight_g) == ("piece", None)


# ---------------------------------------------------------------- who may do what


async def test_another_cooperative_gets_404_for_reads_and_writes(client, session):
    _, mine, _ = await member_with_token(session)
    _, theirs, their_token = await member_with_token(session)
    product = await make_product(session, mine)
    future = NEXT_YEAR.isoformat()
    cert = {"kind": "organic", "certificate_number": "1", "issuer": "x", "valid_until": future}
    requests = [
        ("GET", f"/organisations/{mine.id}/products", None),
        ("POST", f"/organisations/{mine.id}/products", FLOUR_KG),
        ("GET", f"/organisations/{mine.id}/products/{product.id}", None),
        ("PATCH", f"/organisations/{mine.id}/products/{product.id}", {"name_zh": "偷改"}),
        ("GET", f"/organisations/{mine.id}/products/{product.id}/certifications", None),
        ("POST", f"/organisations/{mine.id}/products/{product.id}/certifications", cert),
        # my product through their own organisation's path is not there either
        ("GET", f"/organisations/{theirs.id}/products/{product.id}", None),
        ("PATCH", f"/organisations/{theirs.id}/products/{product.id}", {"name_zh": "偷改"}),
        ("POST", f"/organisations/{theirs.id}/products/{product.id}/certifications", cert),
        ("GET", f"/organisations/{theirs.id}/products/{product.id}/certifications", None),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, headers=bearer(their_token), json=body)
        assert response.status_code == 404, (method, path, response.text)
    await session.refresh(product)
    assert product.name_zh == "和尚头面粉"
    assert await _count_products(session, mine.id) == 1
    assert await _count_products(session, theirs.id) == 0
    assert await session.scalar(select(func.count()).select_from(Certification)) == 0


async def test_a_buyer_organisation_has_no_products(client, session):
    _, buyer, token = await member_with_token(session, kind="buyer", region_code="110106")
    path = f"/organisations/{buyer.id}/products"
    created = await client.post(path, headers=bearer(token), json=FLOUR_KG)
    assert created.status_code == 403
    assert created.json()["code"] == "not_a_cooperative"
    listed = await client.get(path, headers=bearer(token))
    assert listed.status_code == 403 and listed.json()["code"] == "not_a_cooperative"
    assert await _count_products(session, buyer.id) == 0


async def test_a_viewer_reads_but_cannot_write(client, session):
    _, coop, _ = await member_with_token(session)
    product = await make_product(session, coop)
    viewer = await make_user(session)
    await add_member(session, coop, viewer, "viewer")
    headers = bearer(await token_for(session, viewer))
    path = f"/organisations/{coop.id}/products"

    assert (await client.get(path, headers=headers)).status_code == 200
    assert (await client.get(f"{path}/{product.id}", headers=headers)).status_code == 200
    cert = {"kind": "gi", "certificate_number": "AGI01872", "issuer": "农业农村部"}
    writes = [
        ("POST", path, FLOUR_KG),
        ("PATCH", f"{path}/{product.id}", {"name_zh": "改名"}),
        (
            "POST",
            f"{path}/{product.id}/certifications",
            {**cert, "valid_until": NEXT_YEAR.isoformat()},
        ),
    ]
    for method, url, body in writes:
        response = await client.request(method, url, headers=headers, json=body)
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["code"] == "role_too_low"
    assert await _count_products(session, coop.id) == 1


async def test_api_key_scopes(client, session):
    _, coop, _ = await member_with_token(session)
    _, other, _ = await member_with_token(session)
    product = await make_product(session, coop)
    reader = bearer(await api_key_for(session, coop, "catalog:read"))
    writer = bearer(await api_key_for(session, coop, "catalog:write"))
    unrelated = bearer(await api_key_for(session, coop, "organisation:read"))
    path = f"/organisations/{coop.id}/products"

    assert (await client.get(path, headers=reader)).status_code == 200
    assert (await client.get(f"{path}/{product.id}", headers=reader)).status_code == 200
    refused = await client.post(path, headers=reader, json=FLOUR_KG)
    assert refused.status_code == 403 and refused.json()["code"] == "missing_scope"
    listed = await client.get(path, headers=unrelated)
    assert listed.status_code == 403 and listed.json()["code"] == "missing_scope"

    created = await client.post(path, headers=writer, json=WOLFBERRY_BOX)
    assert created.status_code == 201, created.text
    patched = await client.patch(
        f"{path}/{product.id}", headers=writer, json={"description": "ERP 同步的描述"}
    )
    assert patched.status_code == 200 and patched.json()["description"] == "ERP 同步的描述"

    # a key never reaches another organisation
    elsewhere = await client.get(f"/organisations/{other.id}/products", headers=reader)
    assert elsewhere.status_code == 404
    assert await _count_products(session, coop.id) == 2


# ---------------------------------------------------------------- certifications


async def test_certificates_show_validity_computed_at_read_time(client, session):
    _, coop, token = await member_with_token(session)
    product = await make_product(session, coop, **{**WOLFBERRY_BOX, "image_urls": []})
    path = f"/organisations/{coop.id}/products/{product.id}/certifications"
    certificates = [
        ("green_food", "LB-18-21010623456A", "中国绿色食品发展中心", YESTERDAY),
        ("green_food", "LB-18-24010623456A", "中国绿色食品发展中心", NEXT_YEAR),
        ("gi", "AGI01872", "农业农村部", TODAY),  # valid through its last day
    ]
    for kind, number, issuer, valid_until in certificates:
        response = await client.post(
            path,
            headers=bearer(token),
            json={
                "kind": kind,
                "certificate_number": number,
                "issuer": issuer,
                "valid_until": valid_until.isoformat(),
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["is_valid"] is (valid_until >= TODAY)

    listed = await client.get(path, headers=bearer(token))
    assert listed.status_code == 200
    assert [(c["certificate_number"], c["is_valid"]) for c in listed.json()] == [
        ("LB-18-24010623456A", True),
        ("AGI01872", True),
        ("LB-18-21010623456A", False),
    ]
    product_read = await client.get(
        f"/organisations/{coop.id}/products/{product.id}", headers=bearer(token)
    )
    assert [c["is_valid"] for c in product_read.json()["certifications"]] == [True, True, False]
    in_list = await client.get(f"/organisations/{coop.id}/products", headers=bearer(token))
    assert len(in_list.json()["items"][0]["certifications"]) == 3
    # validity is never stored: nothing but the date decides it
    assert "is_valid" not in Certification.__table__.columns


async def test_validity_flips_the_day_after_valid_until(session):
    _, coop, _ = await member_with_token(session)
    product = await make_product(session, coop)
    last_day = dt.date(2026, 6, 30)
    cert = await make_certification(session, product, valid_until=last_day)
    assert catalog_service.is_valid(cert, today=dt.date(2026, 6, 29))
    assert catalog_service.is_valid(cert, today=last_day)
    assert not catalog_service.is_valid(cert, today=dt.date(2026, 7, 1))
    assert (
        await catalog_service.invalid_certification_ids(session, [cert.id], today=last_day) == set()
    )
    assert await catalog_service.invalid_certification_ids(
        session, [cert.id], today=dt.date(2026, 7, 1)
    ) == {cert.id}


async def test_invalid_certification_ids_flags_expired_unknown_and_foreign(session):
    _, coop, _ = await member_with_token(session)
    product = await make_product(session, coop)
    other_product = await make_product(session, coop, name_zh="红枣")
    expired = await make_certification(session, product, valid_until=YESTERDAY)
    current = await make_certification(
        session, product, valid_until=NEXT_YEAR, certificate_number="LB-18-24010699999A"
    )
    foreign = await make_certification(session, other_product, valid_until=NEXT_YEAR)
    unknown = uuid.uuid4()
    ids = [expired.id, current.id, foreign.id, unknown]
    assert await catalog_service.invalid_certification_ids(session, ids) == {expired.id, unknown}
    assert await catalog_service.invalid_certification_ids(session, ids, product_id=product.id) == {
        expired.id,
        foreign.id,
        unknown,
    }
    assert await catalog_service.invalid_certification_ids(session, []) == set()

    by_product = await catalog_service.certifications_of(session, [product.id, other_product.id])
    assert [c.id for c in by_product[product.id]] == [current.id, expired.id]
    assert [c.id for c in by_product[other_product.id]] == [foreign.id]
    lonely = await make_product(session, coop, name_zh="黑瓜子")
    assert await catalog_service.certifications_of(session, [lonely.id]) == {lonely.id: []}


async def test_the_same_certificate_twice_is_a_conflict_and_bad_input_names_the_field(
    client, session
):
    _, coop, token = await member_with_token(session)
    product = await make_product(session, coop)
    path = f"/organisations/{coop.id}/products/{product.id}/certifications"
    body = {
        "kind": "organic",
        "certificate_number": "1240P2300123",
        "issuer": "中绿华夏有机食品认证中心",
        "valid_until": NEXT_YEAR.isoformat(),
    }
    assert (await client.post(path, headers=bearer(token), json=body)).status_code == 201
    again = await client.post(path, headers=bearer(token), json=body)
    assert again.status_code == 409 and again.json()["code"] == "duplicate_certificate"
    for bad, field in [
        ({**body, "kind": "famous"}, "kind"),
        ({**body, "valid_until": "明年"}, "valid_until"),
        ({**body, "is_valid": True}, "is_valid"),
        ({k: v for k, v in body.items() if k != "issuer"}, "issuer"),
    ]:
        response = await client.post(path, headers=bearer(token), json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert field in _fields(response)
    count = select(func.count()).select_from(Certification)
    assert await session.scalar(count.where(Certification.product_id == product.id)) == 1


# ---------------------------------------------------------------- for other domains


@pytest.mark.parametrize(
    ("unit", "box_net_weight_g", "base", "size", "pricing"),
    [
        ("kg", None, "g", 1000, 1000),
        ("jin", None, "g", 500, 1000),
        ("box", 250, "g", 250, 1000),
        ("piece", None, "piece", 1, 1),
    ],
)
async def test_units_for_other_domains(session, unit, box_net_weight_g, base, size, pricing):
    _, coop, _ = await member_with_token(session)
    product = await make_product(session, coop, unit=unit, box_net_weight_g=box_net_weight_g)
    assert catalog_service.base_unit(product) == base
    assert catalog_service.unit_size(product) == size
    assert catalog_service.pricing_unit(product) == pricing


async def test_get_product_scoped_to_a_cooperative(session):
    _, mine, _ = await member_with_token(session)
    _, theirs, _ = await member_with_token(session)
    product = await make_product(session, mine)
    found = await catalog_service.get_product(session, product_id=product.id)
    assert found.id == product.id
    same = await catalog_service.get_product(session, product_id=product.id, cooperative_id=mine.id)
    assert same.id == product.id
    with pytest.raises(NotFound):
        await catalog_service.get_product(session, product_id=product.id, cooperative_id=theirs.id)
    with pytest.raises(NotFound):
        await catalog_service.get_product(session, product_id=uuid.uuid4())


async def test_a_listed_products_unit_of_sale_cannot_change(client, session):
    """A listing counts its stock in units of the size it was listed with: while one is open,
    the product's unit of sale (kg → a 20 kg box) stays; its name can change. Closed, it may."""
    from tests.factories_listings import make_listing, make_supply

    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    url = f"/organisations/{supply.cooperative.id}/products/{supply.product.id}"
    before = (supply.product.unit, supply.product.box_net_weight_g)
    refused = await client.patch(
        url, headers=bearer(supply.token), json={"unit": "box", "box_net_weight_g": 20000}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "product_listed"
    await session.refresh(supply.product)
    assert (supply.product.unit, supply.product.box_net_weight_g) == before
    renamed = await client.patch(
        url, headers=bearer(supply.token), json={"name_zh": "靖远枸杞干果"}
    )
    assert renamed.status_code == 200, renamed.text
    closed = await client.post(
        f"/organisations/{supply.cooperative.id}/listings/{listing.id}/close",
        headers=bearer(supply.token) | {"Idempotency-Key": str(uuid.uuid4())},
    )
    assert closed.status_code == 200, closed.text
    changed = await client.patch(
        url, headers=bearer(supply.token), json={"unit": "box", "box_net_weight_g": 20000}
    )
    assert changed.status_code == 200, changed.text
