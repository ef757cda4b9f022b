"""The gazetteer: look-ups by code, Chinese name and pinyin, children, distance, and the
designated-poverty-county flag."""

from __future__ import annotations

import math

import pytest

from market.regions import geo, service
from market.regions.gazetteer import pinyin_of, short_name
from tests.factories import bearer, member_with_token, platform_operator


async def test_look_up_by_code_with_its_path(client):
    response = await client.get("/regions/620421")
    assert response.status_code == 200
    body = response.json()
    assert body["name_zh"] == "靖远县"
    assert body["level"] == "county"
    assert body["parent_code"] == "620400"
    assert body["path"] == ["甘肃省", "白银市", "靖远县"]
    assert (await client.get("/regions/999999")).status_code == 404
    assert (await client.get("/regions/62042")).status_code == 422


@pytest.mark.parametrize("query", ["靖远", "靖远县", "jingyuan", "JingYuan", "jy"])
async def test_find_jingyuan_by_chinese_pinyin_or_initials(client, query):
    params = {"q": query, "level": "county", "limit": 100}  # "jy" names dozens of counties
    response = await client.get("/regions", params=params)
    assert response.status_code == 200
    assert "620421" in [r["code"] for r in response.json()]


async def test_exact_names_come_first(client):
    found = (await client.get("/regions", params={"q": "白银"})).json()
    assert found[0]["name_zh"] in ("白银市", "白银区")
    beijing = (await client.get("/regions", params={"q": "beijing"})).json()
    assert beijing[0]["code"] == "110000"


async def test_children_of_baiyin(client):
    response = await client.get("/regions/620400/children")
    names = {r["name_zh"] for r in response.json()}
    assert {"靖远县", "会宁县", "景泰县", "白银区", "平川区"} == names
    provinces = (await client.get("/regions/110000/children")).json()
    assert [r["code"] for r in provinces] == ["110100"]


def test_place_names_are_read_as_places():
    assert pinyin_of("朝阳区", "朝阳") == ("chaoyang", "cy")
    assert pinyin_of("长治市", "长治") == ("changzhi", "cz")
    assert short_name("宁夏回族自治区") == "宁夏"
    assert short_name("和县") == "和县"


def _law_of_cosines_km(lat1, lon1, lat2, lon2):
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    return 6371.0 * math.acos(
        math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    )


async def test_distance_jingyuan_to_beijing_within_two_percent(client):
    response = await client.get("/regions/distance", params={"from": "620421", "to": "110000"})
    assert response.status_code == 200
    km = float(response.json()["distance_km"])
    # independent figure: the spherical law of cosines on the same coordinates
    expected = _law_of_cosines_km(36.571365, 104.676774, 39.904211, 116.407394)
    assert abs(km - expected) / expected < 0.02
    assert 1000 < km < 1200  # about 1,090 km as the crow flies
    assert response.json()["from_name"] == "靖远县" and response.json()["to_name"] == "北京市"


def test_distance_is_symmetric_and_zero_on_itself():
    a = geo.distance_km(36.57, 104.68, 23.13, 113.26)
    b = geo.distance_km(23.13, 113.26, 36.57, 104.68)
    assert a == pytest.approx(b)
    assert geo.distance_km(30, 100, 30, 100) == 0


def test_scope_is_by_region_prefix():
    assert service.in_scope("620421", ["620400"])
    assert service.in_scope("620421", ["620000"])
    assert service.in_scope("620421", ["620421"])
    assert not service.in_scope("620421", ["620500"])
    assert not service.in_scope("640424", ["620000"])


async def test_authority_flags_poverty_counties_only_in_its_regions(client, session):
    _, platform_token = await platform_operator(session)
    _, authority, authority_token = await member_with_token(
        session, kind="authority", region_code="620400"
    )
    await client.put(
        f"/platform/organisations/{authority.id}/audit-regions",
        headers=bearer(platform_token),
        json={"region_codes": ["620400"]},
    )
    inside = await client.put(
        "/regions/620422/poverty-county",
        headers=bearer(authority_token),
        json={"designated": True},
    )
    assert inside.status_code == 200 and inside.json()["is_poverty_county"] is True
    outside = await client.put(
        "/regions/640424/poverty-county",
        headers=bearer(authority_token),
        json={"designated": True},
    )
    assert outside.status_code == 403 and outside.json()["code"] == "outside_scope"
    _, _, buyer_token = await member_with_token(session, kind="buyer", region_code="110106")
    buyer = await client.put(
        "/regions/620422/poverty-county", headers=bearer(buyer_token), json={"designated": False}
    )
    assert buyer.status_code == 403
    not_county = await client.put(
        "/regions/620400/poverty-county", headers=bearer(platform_token), json={"designated": True}
    )
    assert not_county.status_code == 422
    assert (await client.get("/regions/620422")).json()["is_poverty_county"] is True


async def test_poverty_import_accepts_gb18030_and_reports_bad_lines(client, session):
    _, platform_token = await platform_operator(session)
    text = (
        "code,designated,name\n"
        "620421,是,靖远县\n620422,1,会宁县\n620400,1,白银市\n620423,maybe,景泰县\n"
    )
    data = text.encode("gb18030")
    response = await client.post(
        "/regions/poverty-counties/import",
        headers=bearer(platform_token),
        files={"file": ("贫困县.csv", data, "text/csv")},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["rows"] == 4 and result["changed"] == 2
    assert [e["line"] for e in result["errors"]] == [4, 5]
    again = await client.post(
        "/regions/poverty-counties/import",
        headers=bearer(platform_token),
        files={"file": ("贫困县.csv", data, "text/csv")},
    )
    assert again.json()["changed"] == 0 and again.json()["unchanged"] == 2
    assert (await client.get("/regions/620421")).json()["is_poverty_county"] is True

    # spaces after the header's commas, full-width digits, and a county given twice: the
    # second is reported, not applied after the first
    spaced = "code, designated\n６２０４２１,0\n620421,1\n"
    third = await client.post(
        "/regions/poverty-counties/import",
        headers=bearer(platform_token),
        files={"file": ("贫困县.csv", spaced.encode(), "text/csv")},
    )
    assert third.status_code == 200, third.text
    assert (third.json()["changed"], [e["line"] for e in third.json()["errors"]]) == (1, [3])
    assert "already on line 2" in third.json()["errors"][0]["reason"]
    assert (await client.get("/regions/620421")).json()["is_poverty_county"] is False


async def test_poverty_import_needs_platform_or_authority(client, session):
    _, _, buyer_token = await member_with_token(session, kind="buyer", region_code="110106")
    response = await client.post(
        "/regions/poverty-counties/import",
        headers=bearer(buyer_token),
        files={"file": ("x.csv", b"code,designated\n620421,1\n", "text/csv")},
    )
    assert response.status_code == 403
