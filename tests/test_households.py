"""Households: the registry import (bad rows, re-import, GB18030, modes), cooperatives' member
households (poor status only from the registry, isolation, overlaps), masking and logged
reveals, poor status on a date, and the `market households import` command."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import uuid

import pytest
from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.types import Date
from typer.testing import CliRunner

from market.cli import app as cli_app
from market.errors import Invalid
from market.households import service
from market.households.models import (
    CooperativeMember,
    Household,
    PersonalDataReveal,
    PoorStatusPeriod,
)
from tests.factories import add_member, bearer, make_user, member_with_token, token_for
from tests.factories_households import (
    id_number,
    membership,
    official,
    registered_household,
    registry_csv,
    registry_row,
)

IMPORT = "/authority/households/import"
D = dt.date


async def upload(client, token, text, *, mode=None, encoding="utf-8"):  # type: ignore[no-untyped-def]
    return await client.post(
        IMPORT,
        headers=bearer(token),
        params={"mode": mode} if mode else None,
        files={"file": ("建档立卡户.csv", text.encode(encoding), "text/csv")},
    )


async def households_by_registry_id(session, *ids):  # type: ignore[no-untyped-def]
    rows = await session.scalars(select(Household).where(Household.registry_id.in_(ids)))
    return {h.registry_id: h for h in rows}


async def periods_of(session, household_id):  # type: ignore[no-untyped-def]
    rows = await session.execute(
        select(PoorStatusPeriod.valid_from, PoorStatusPeriod.valid_until)
        .where(PoorStatusPeriod.household_id == household_id)
        .order_by(PoorStatusPeriod.valid_from)
    )
    return [tuple(r) for r in rows]


# ---------------------------------------------------------------- pure rules


def wrong_check(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def test_id_numbers_follow_gb_11643():
    assert service.normalise_id_number("11010519491231002X") == "11010519491231002X"
    assert service.normalise_id_number(" 11010519491231002x ") == "11010519491231002X"
    # full-width digits (office software) are the same digits
    assert service.normalise_id_number("１１010519491231002Ｘ") == "11010519491231002X"
    valid = id_number(7)
    assert service.normalise_id_number(valid) == valid
    for bad, reason in [
        (wrong_check(valid), "check character"),
        ("11010519491331002X", "birth date"),
        ("1101051949123100", "17 digits"),
        ("11010519491231002Y", "17 digits"),
    ]:
        with pytest.raises(ValueError, match=reason):
            service.normalise_id_number(bad)


def test_masking_keeps_only_what_identifies_nobody():
    assert service.mask_name("张建国") == "张**"
    assert service.mask_name("李四") == "李*"
    assert service.mask_name("欧阳娜娜") == "欧***"
    assert service.mask_name("王") == "*"
    assert service.mask_phone("13812345678") == "138****5678"
    assert service.mask_phone("0943-6123456") == "094*****3456"
    assert service.mask_phone(None) is None
    assert service.mask_id_number("002X") == "**************002X"
    assert service.mask_id_number(None) is None


def test_scope_clause_agrees_with_in_scope():
    official_ = service.Official(
        user_id=None, grants=((uuid.uuid4(), ("620400",)), (uuid.uuid4(), ("640000", "110105")))
    )
    assert official_.covers("620421") and official_.covers("640424")
    assert official_.covers("110105") and not official_.covers("110106")
    assert not official_.covers("620502")
    sql = str(official_.county_clause().compile(compile_kwargs={"literal_binds": True}))
    assert "'6204'" in sql and "'64'" in sql and "'110105'" in sql
    assert (
        service.Official(user_id=None)
        .county_clause()
        .compare(service.Official(user_id=None, grants=()).county_clause())
    )


# ---------------------------------------------------------------- registry import


async def test_import_reports_each_bad_row_and_applies_the_valid_ones(client, session, settings):
    _, authority, token = await official(session)
    rows = [
        registry_row("R-001", 1, poor_from="2016-01-01", poor_until="2020-12-31"),  # line 2
        registry_row("R-001", 1, poor_from="2023-01-01"),  # line 3: a second period
        registry_row("R-002", 2, county_code="620422", head_name="李秀英", phone=""),  # 4
        {**registry_row("R-003", 3), "id_number": wrong_check(id_number(3))},  # 5
        registry_row("R-004", 4, county_code="640424"),  # 6: outside the regions
        registry_row("R-005", 5, phone="call me"),  # 7
        registry_row("R-006", 6, poor_from="2020/01/01"),  # 8
        registry_row("R-007", 7, poor_from="2020-01-01", poor_until="2019-01-01"),  # 9
        registry_row("R-008", 8, poor_from="2016-01-01", poor_until="2019-12-31"),  # 10
        registry_row("R-008", 8, poor_from="2019-12-31"),  # 11: overlaps line 10
        registry_row("R-009", 9, county_code="999999"),  # 12
        {**registry_row("R-010", 10), "id_number": id_number(1)},  # 13: R-001's number
        registry_row("R-011", 11, head_name=""),  # 14
        registry_row("R-012", 12, county_code="620400"),  # 15: a city, not a county
    ]
    response = await upload(client, token, registry_csv(rows))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["mode"] == "partial"
    assert (result["rows"], result["households"]) == (14, 12)
    assert (result["created"], result["updated"], result["unchanged"]) == (2, 0, 0)
    assert result["refused"] == 10
    by_line = {e["line"]: e for e in result["errors"]}
    assert sorted(by_line) == list(range(5, 16))
    assert by_line[5]["column"] == "id_number" and "check character" in by_line[5]["reason"]
    assert "outside your regions" in by_line[6]["reason"]
    assert by_line[7]["column"] == "phone"
    assert by_line[8]["column"] == "poor_from" and "YYYY-MM-DD" in by_line[8]["reason"]
    assert "before poor_from" in by_line[9]["reason"]
    assert "not imported" in by_line[10]["reason"]  # valid, but its household has a bad row
    assert "overlaps the one on line 10" in by_line[11]["reason"]
    assert "not a known region" in by_line[12]["reason"]
    assert "registry id R-001 on line 2" in by_line[13]["reason"]
    assert by_line[14]["column"] == "head_name"
    assert "not a county" in by_line[15]["reason"]
    assert id_number(3)[:10] not in response.text  # ID numbers never echoed

    stored = await households_by_registry_id(session, *[f"R-{i:03d}" for i in range(1, 13)])
    assert sorted(stored) == ["R-001", "R-002"]
    zhang = stored["R-001"]
    number = id_number(1)
    assert (
        zhang.id_number_hash
        == hmac.new(settings.hashing_key(), number.encode(), hashlib.sha256).digest()
    )
    assert zhang.id_number_last4 == number[-4:]
    assert (zhang.head_name, zhang.phone, zhang.village) == (
        "张建国",
        "13812345678",
        "东湾镇砂梁村",
    )
    assert zhang.registry_organisation_id == authority.id
    assert zhang.added_by_cooperative_id is None
    assert await periods_of(session, zhang.id) == [
        (D(2016, 1, 1), D(2020, 12, 31)),
        (D(2023, 1, 1), None),
    ]
    assert stored["R-002"].phone is None
    assert await periods_of(session, stored["R-002"].id) == []  # registered, never poor


async def test_reimport_changes_nothing_and_a_changed_file_replaces_periods(client, session):
    _, _, token = await official(session)
    rows = [
        registry_row("R-101", 101, poor_from="2016-01-01", poor_until="2020-12-31"),
        registry_row("R-101", 101, poor_from="2022-03-01"),
        registry_row("R-102", 102, head_name="王芳"),
    ]
    first = await upload(client, token, registry_csv(rows))
    assert first.json()["created"] == 2 and first.json()["errors"] == []
    before = await households_by_registry_id(session, "R-101", "R-102")
    before_rows = {
        rid: (h.updated_at, h.content_hash, await periods_of(session, h.id))
        for rid, h in before.items()
    }
    period_ids = set(await session.scalars(select(PoorStatusPeriod.id)))

    again = await upload(client, token, registry_csv(rows))
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("created", "updated", "unchanged", "refused")} == {
        "created": 0,
        "updated": 0,
        "unchanged": 2,
        "refused": 0,
    }
    session.expire_all()
    after = await households_by_registry_id(session, "R-101", "R-102")
    for rid, h in after.items():
        assert (h.updated_at, h.content_hash, await periods_of(session, h.id)) == before_rows[rid]
    assert set(await session.scalars(select(PoorStatusPeriod.id))) == period_ids

    # the household exited poverty: its open period now ends; the phone changed too
    rows[1] = registry_row("R-101", 101, poor_from="2022-03-01", poor_until="2024-12-31")
    rows[0]["phone"] = rows[1]["phone"] = "13900001111"
    changed = await upload(client, token, registry_csv(rows))
    assert (changed.json()["updated"], changed.json()["unchanged"]) == (1, 1)
    session.expire_all()
    household = (await households_by_registry_id(session, "R-101"))["R-101"]
    assert household.phone == "13900001111"
    assert await periods_of(session, household.id) == [
        (D(2016, 1, 1), D(2020, 12, 31)),
        (D(2022, 3, 1), D(2024, 12, 31)),
    ]


async def test_gb18030_and_utf8_with_bom_are_both_read(client, session):
    _, _, token = await official(session)
    text = registry_csv(
        [
            registry_row(
                "R-201", 201, head_name="马玉兰", village="刘川镇来窑村", poor_from="2018-01-01"
            )
        ]
    )
    response = await upload(client, token, text, encoding="gb18030")
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1 and response.json()["errors"] == []
    household = (await households_by_registry_id(session, "R-201"))["R-201"]
    assert (household.head_name, household.village) == ("马玉兰", "刘川镇来窑村")

    # the same content in UTF-8 with a BOM is the same content: unchanged
    again = await upload(client, token, text, encoding="utf-8-sig")
    assert again.json()["unchanged"] == 1

    latin1 = await client.post(
        IMPORT,
        headers=bearer(token),
        files={"file": ("x.csv", b"registry_id,county_code\n\xff\xfe\xfa,1\n", "text/csv")},
    )
    assert latin1.status_code == 422 and latin1.json()["errors"][0]["field"] == "file"


async def test_full_width_digits_read_as_ascii(client, session):
    """Office software often writes ids in full-width digits (６２０４２１): the import and
    the link read them as the ASCII ones, so one household is not two."""
    _, _, token = await official(session)
    row = registry_row("R-301", 301, head_name="田秀芳", village="刘川镇来窑村")
    wide = {
        k: v.translate(str.maketrans("0123456789-", "０１２３４５６７８９－"))
        if k in ("registry_id", "id_number")
        else v
        for k, v in row.items()
    }
    response = await upload(client, token, registry_csv([wide]))
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1 and response.json()["errors"] == []
    assert "R-301" in await households_by_registry_id(session, "R-301")
    again = await upload(client, token, registry_csv([row]))  # the same household in ASCII
    assert again.json()["unchanged"] == 1

    _, coop, coop_token = await member_with_token(session)
    linked = await client.post(
        f"/organisations/{coop.id}/households/link",
        headers=bearer(coop_token),
        json={"registry_id": "R－３０１", "joined_on": "2024-01-01"},
    )
    assert linked.status_code == 201, linked.text


async def test_all_or_nothing_writes_nothing_when_a_row_is_bad(client, session):
    _, _, token = await official(session)
    rows = [
        registry_row("R-301", 301, poor_from="2016-01-01"),
        registry_row("R-302", 302),
        registry_row("R-303", 303, poor_from="2016-13-01"),  # line 4
    ]
    refused = await upload(client, token, registry_csv(rows), mode="all_or_nothing")
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == "import_refused" and "nothing was imported" in body["detail"]
    assert [(e["line"], e["column"]) for e in body["errors"]] == [(4, "poor_from")]
    assert await households_by_registry_id(session, "R-301", "R-302", "R-303") == {}

    accepted = await upload(client, token, registry_csv(rows[:2]), mode="all_or_nothing")
    assert accepted.status_code == 200 and accepted.json()["created"] == 2

    bad_mode = await upload(client, token, registry_csv(rows[:2]), mode="some")
    assert bad_mode.status_code == 422 and bad_mode.json()["errors"][0]["field"] == "mode"


async def test_import_needs_an_official_in_scope_and_a_proper_header(client, session):
    text = registry_csv([registry_row("R-401", 401)])
    _, _, coop_token = await member_with_token(session)
    assert (await upload(client, coop_token, text)).status_code == 403
    _, _, unverified = await official(session, verified=False)
    assert (await upload(client, unverified, text)).status_code == 403
    _, _, no_regions = await official(session, regions=())
    assert (await upload(client, no_regions, text)).json()["code"] == "authority_only"

    _, _, token = await official(session)
    no_id = await upload(client, token, "registry_id,county_code,head_name\nR-1,620421,张三\n")
    assert no_id.status_code == 422 and "id_number" in no_id.json()["detail"]
    assert await households_by_registry_id(session, "R-401", "R-1") == {}


async def test_households_registered_elsewhere_are_refused_per_row(client, session, settings):
    _, ningxia, _ = await official(session, regions=("640000",), region_code="640000")
    await registered_household(
        session,
        key=settings.hashing_key(),
        registry_id="R-501",
        serial=501,
        county_code="640424",
        registry_organisation=ningxia,
    )
    _, _, token = await official(session)
    rows = [
        registry_row("R-501", 501, county_code="620421"),  # would move it into Baiyin
        registry_row("R-502", 502),
        {**registry_row("R-503", 503), "id_number": id_number(501, region="640424")},
    ]
    result = (await upload(client, token, registry_csv(rows))).json()
    assert result["created"] == 1
    assert [(e["line"], e["column"]) for e in result["errors"]] == [
        (2, "registry_id"),
        (4, "id_number"),
    ]
    assert "outside your regions" in result["errors"][0]["reason"]
    assert "R-501" not in result["errors"][1]["reason"]  # the other registry id is not named
    moved = (await households_by_registry_id(session, "R-501"))["R-501"]
    assert moved.county_code == "640424"


# ---------------------------------------------------------------- cooperatives and poor status


async def test_a_cooperative_cannot_mark_a_household_poor(client, session, settings):
    _, coop, token = await member_with_token(session)
    registered = await registered_household(
        session, key=settings.hashing_key(), registry_id="R-601", serial=601
    )
    members = f"/organisations/{coop.id}/households"

    link = {"registry_id": "R-601", "joined_on": "2024-01-01"}
    for extra in ({"poor_from": "2020-01-01"}, {"is_poor": True}, {"poor": True}):
        refused = await client.post(f"{members}/link", headers=bearer(token), json=link | extra)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["type"] == "extra_forbidden"
    unregistered = {"head_name": "赵大山", "village": "北湾镇", "joined_on": "2024-01-01"}
    for extra in ({"poor_from": "2020-01-01", "poor_until": None}, {"registry_id": "R-999"}):
        refused = await client.post(
            f"{members}/unregistered", headers=bearer(token), json=unregistered | extra
        )
        assert refused.status_code == 422
    assert await session.scalar(select(func.count()).select_from(CooperativeMember)) == 0
    assert (
        await session.scalar(
            select(func.count()).where(Household.added_by_cooperative_id == coop.id)
        )
        == 0
    )
    assert await session.scalar(select(func.count()).select_from(PoorStatusPeriod)) == 0

    # the import is for officials only
    text = registry_csv([registry_row("R-601", 601, poor_from="2020-01-01")])
    assert (await upload(client, token, text)).status_code == 403

    added = await client.post(
        f"{members}/unregistered",
        headers=bearer(token),
        json=unregistered | {"phone": "13700001234"},
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["poor"] is False and body["household"]["registered"] is False
    assert body["household"]["county_code"] == "620421"  # the cooperative's county
    household_id = uuid.UUID(body["household"]["id"])
    for day in (D(2000, 1, 1), D(2024, 1, 1), D(2099, 12, 31)):
        assert await service.is_poor_on(session, household_id=household_id, on=day) is False
    linked = await client.post(f"{members}/link", headers=bearer(token), json=link)
    assert linked.status_code == 201 and linked.json()["poor"] is False
    assert linked.json()["household"]["id"] == str(registered.id)
    assert await session.scalar(select(func.count()).select_from(PoorStatusPeriod)) == 0


async def test_poor_status_shown_to_the_cooperative_is_the_registry_s(client, session, settings):
    _, coop, token = await member_with_token(session)
    poor = await registered_household(
        session,
        key=settings.hashing_key(),
        serial=611,
        periods=((D(2016, 1, 1), None),),
    )
    exited = await registered_household(
        session,
        key=settings.hashing_key(),
        serial=612,
        head_name="刘桂花",
        periods=((D(2016, 1, 1), D(2020, 12, 31)),),
    )
    await membership(session, cooperative=coop, household=poor)
    await membership(session, cooperative=coop, household=exited)
    page = await client.get(
        f"/organisations/{coop.id}/households", headers=bearer(token), params={"on": "2020-12-31"}
    )
    assert {m["household"]["id"]: m["poor"] for m in page.json()["items"]} == {
        str(poor.id): True,
        str(exited.id): True,
    }
    later = await client.get(
        f"/organisations/{coop.id}/households", headers=bearer(token), params={"on": "2021-01-01"}
    )
    assert {m["household"]["id"]: m["poor"] for m in later.json()["items"]} == {
        str(poor.id): True,
        str(exited.id): False,
    }
    assert {m["as_of"] for m in later.json()["items"]} == {"2021-01-01"}


async def test_memberships_do_not_overlap_and_can_end(client, session, settings):
    _, coop, token = await member_with_token(session)
    household = await registered_household(
        session, key=settings.hashing_key(), registry_id="R-701", serial=701
    )
    members = f"/organisations/{coop.id}/households"
    first = await client.post(
        f"{members}/link",
        headers=bearer(token),
        json={"registry_id": "R-701", "joined_on": "2024-01-01"},
    )
    assert first.status_code == 201 and first.json()["left_on"] is None
    overlap = await client.post(
        f"{members}/link",
        headers=bearer(token),
        json={"registry_id": "R-701", "joined_on": "2024-06-01"},
    )
    assert overlap.status_code == 409 and overlap.json()["code"] == "membership_overlap"
    assert "2024-01-01" in overlap.json()["detail"] and "R-701" in overlap.json()["detail"]

    not_member_then = await client.post(
        f"{members}/{household.id}/end", headers=bearer(token), json={"left_on": "2023-12-31"}
    )
    assert not_member_then.status_code == 422
    ended = await client.post(
        f"{members}/{household.id}/end", headers=bearer(token), json={"left_on": "2024-05-31"}
    )
    assert ended.status_code == 200, ended.text
    assert ended.json()["left_on"] == "2024-05-31"
    again = await client.post(
        f"{members}/link",
        headers=bearer(token),
        json={"registry_id": "R-701", "joined_on": "2024-06-01"},
    )
    assert again.status_code == 201, again.text
    detail = await client.get(f"{members}/{household.id}", headers=bearer(token))
    assert [(m["joined_on"], m["left_on"]) for m in detail.json()["memberships"]] == [
        ("2024-01-01", "2024-05-31"),
        ("2024-06-01", None),
    ]
    on_day = await client.get(members, headers=bearer(token), params={"on": "2024-03-01"})
    assert [m["left_on"] for m in on_day.json()["items"]] == ["2024-05-31"]
    everything = await client.get(members, headers=bearer(token), params={"limit": 1})
    assert len(everything.json()["items"]) == 1 and everything.json()["next_cursor"]
    rest = await client.get(
        members, headers=bearer(token), params={"cursor": everything.json()["next_cursor"]}
    )
    assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None

    backwards = await client.post(
        f"{members}/link",
        headers=bearer(token),
        json={"registry_id": "R-701", "joined_on": "2026-01-01", "left_on": "2025-01-01"},
    )
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "left_on"
    unknown = await client.post(
        f"{members}/link",
        headers=bearer(token),
        json={"registry_id": "R-NOPE", "joined_on": "2024-01-01"},
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "registry_id"


async def test_concurrent_links_of_one_household_give_one_membership_and_a_409(
    committing_client, committing_session, settings
):
    _, coop, token = await member_with_token(committing_session)
    await registered_household(
        committing_session, key=settings.hashing_key(), registry_id="R-751", serial=751
    )
    await committing_session.commit()
    url = f"/organisations/{coop.id}/households/link"
    responses = await asyncio.gather(
        *(
            committing_client.post(
                url,
                headers=bearer(token),
                json={"registry_id": "R-751", "joined_on": f"2024-0{month}-01"},
            )
            for month in range(1, 9)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"membership_overlap"}
    count = await committing_session.scalar(
        select(func.count()).where(CooperativeMember.cooperative_id == coop.id)
    )
    assert count == 1


async def test_membership_rules_for_who_may_write(client, session, settings):
    owner, coop, _ = await member_with_token(session)
    viewer = await make_user(session)
    await add_member(session, coop, viewer, "viewer")
    viewer_token = await token_for(session, viewer)
    await registered_household(session, key=settings.hashing_key(), registry_id="R-801", serial=801)
    link = {"registry_id": "R-801", "joined_on": "2024-01-01"}
    members = f"/organisations/{coop.id}/households"
    as_viewer = await client.post(f"{members}/link", headers=bearer(viewer_token), json=link)
    assert as_viewer.status_code == 403
    assert (await client.get(members, headers=bearer(viewer_token))).status_code == 200

    _, buyer, buyer_token = await member_with_token(session, kind="buyer", region_code="110106")
    not_a_coop = await client.post(
        f"/organisations/{buyer.id}/households/link", headers=bearer(buyer_token), json=link
    )
    assert not_a_coop.status_code == 403 and not_a_coop.json()["code"] == "not_a_cooperative"

    _, pending, pending_token = await member_with_token(session)
    pending.verification_status = "pending"
    await session.flush()
    unverified = await client.post(
        f"/organisations/{pending.id}/households/link", headers=bearer(pending_token), json=link
    )
    assert unverified.status_code == 403 and unverified.json()["code"] == "not_verified"

    owner_token = await token_for(session, owner)
    keys = f"/organisations/{coop.id}/api-keys"
    read_only = await client.post(
        keys, headers=bearer(owner_token), json={"name": "ERP", "scopes": ["households:read"]}
    )
    secret = read_only.json()["key"]
    assert (await client.get(members, headers=bearer(secret))).status_code == 200
    by_key = await client.post(f"{members}/link", headers=bearer(secret), json=link)
    assert by_key.status_code == 403 and by_key.json()["code"] == "missing_scope"


async def test_another_cooperative_sees_404_for_your_member_households(client, session, settings):
    _, mine, my_token = await member_with_token(session)
    _, theirs, their_token = await member_with_token(session, region_code="620422")
    household = await registered_household(
        session, key=settings.hashing_key(), registry_id="R-901", serial=901
    )
    await membership(session, cooperative=mine, household=household)
    added = await client.post(
        f"/organisations/{mine.id}/households/unregistered",
        headers=bearer(my_token),
        json={"head_name": "孙小梅", "village": "乌兰镇", "joined_on": "2024-01-01"},
    )
    unregistered_id = added.json()["household"]["id"]
    requests = [
        ("GET", f"/organisations/{mine.id}/households", None),
        ("GET", f"/organisations/{mine.id}/households/{household.id}", None),
        ("POST", f"/organisations/{mine.id}/households/link", {"registry_id": "R-901"}),
        (
            "POST",
            f"/organisations/{mine.id}/households/unregistered",
            {"head_name": "x", "village": "y", "joined_on": "2024-01-01"},
        ),
        (
            "POST",
            f"/organisations/{mine.id}/households/{household.id}/end",
            {"left_on": "2025-01-01"},
        ),
        # through their own cooperative, my households are not there either
        ("GET", f"/organisations/{theirs.id}/households/{household.id}", None),
        ("GET", f"/organisations/{theirs.id}/households/{unregistered_id}", None),
        (
            "POST",
            f"/organisations/{theirs.id}/households/{household.id}/end",
            {"left_on": "2025-01-01"},
        ),
        (
            "POST",
            f"/organisations/{theirs.id}/households/{unregistered_id}/end",
            {"left_on": "2025-01-01"},
        ),
    ]
    for method, url, body in requests:
        if body and url.endswith("/link"):
            body = {**body, "joined_on": "2024-01-01"}
        response = await client.request(method, url, headers=bearer(their_token), json=body)
        assert response.status_code == 404, (method, url, response.text)
    their_list = await client.get(
        f"/organisations/{theirs.id}/households", headers=bearer(their_token)
    )
    assert their_list.json()["items"] == []
    members = await session.scalars(
        select(CooperativeMember.left_on).where(CooperativeMember.cooperative_id == mine.id)
    )
    assert list(members) == [None, None]  # nothing ended
    with pytest.raises(Invalid) as refused:
        await service.require_member(
            session, cooperative_id=theirs.id, household_id=household.id, on=D(2024, 6, 1)
        )
    assert refused.value.errors == [{"field": "household_id", "message": refused.value.detail}]


async def test_require_member_checks_the_day(session, settings):
    _, coop, _ = await member_with_token(session)
    household = await registered_household(session, key=settings.hashing_key(), serial=951)
    await membership(
        session,
        cooperative=coop,
        household=household,
        joined_on=D(2024, 1, 1),
        left_on=D(2024, 6, 30),
    )
    for day in (D(2024, 1, 1), D(2024, 6, 30)):
        found = await service.require_member(
            session, cooperative_id=coop.id, household_id=household.id, on=day
        )
        assert found.id == household.id
    for day in (D(2023, 12, 31), D(2024, 7, 1)):
        with pytest.raises(Invalid) as refused:
            await service.require_member(
                session, cooperative_id=coop.id, household_id=household.id, on=day
            )
        assert refused.value.status == 422 and refused.value.code == "not_a_member"


async def test_poor_on_boundaries(session, settings):
    household = await registered_household(
        session,
        key=settings.hashing_key(),
        serial=961,
        periods=((D(2016, 1, 1), D(2020, 12, 31)), (D(2023, 1, 1), None)),
    )
    expected = {
        D(2015, 12, 31): False,
        D(2016, 1, 1): True,
        D(2020, 12, 31): True,  # the last day of a period is poor
        D(2021, 1, 1): False,  # the day after is not
        D(2022, 12, 31): False,
        D(2023, 1, 1): True,
        D(2099, 1, 1): True,  # open-ended
    }
    for day, poor in expected.items():
        assert await service.is_poor_on(session, household_id=household.id, on=day) is poor, day
        in_sql = await session.scalar(
            select(func.count())
            .select_from(Household)
            .where(
                Household.id == household.id,
                service.poor_on(Household.id.expression, literal(day, Date())),
            )
        )
        assert in_sql == int(poor), day
    # `on` may be a column: here, the days a membership starts
    _, coop, _ = await member_with_token(session)
    await membership(
        session,
        cooperative=coop,
        household=household,
        joined_on=D(2020, 12, 31),
        left_on=D(2020, 12, 31),
    )
    await membership(
        session,
        cooperative=coop,
        household=household,
        joined_on=D(2021, 1, 1),
        left_on=D(2022, 12, 31),
    )
    await membership(session, cooperative=coop, household=household, joined_on=D(2023, 1, 1))
    rows = await session.execute(
        select(
            CooperativeMember.joined_on,
            service.poor_on(
                CooperativeMember.household_id.expression, CooperativeMember.joined_on.expression
            ),
        )
        .where(CooperativeMember.cooperative_id == coop.id)
        .order_by(CooperativeMember.joined_on)
    )
    assert [tuple(r) for r in rows] == [
        (D(2020, 12, 31), True),
        (D(2021, 1, 1), False),
        (D(2023, 1, 1), True),
    ]
    unknown = await service.is_poor_on(session, household_id=uuid.uuid4(), on=D(2024, 1, 1))
    assert unknown is False


# ---------------------------------------------------------------- masking and reveals


async def test_everyone_sees_masked_data_and_only_the_authority_in_scope_reveals(
    client, session, settings
):
    official_user, baiyin, baiyin_token = await official(session)
    _, _, ningxia_token = await official(session, regions=("640000",), region_code="640000")
    _, coop, coop_token = await member_with_token(session)
    _, _, buyer_token = await member_with_token(session, kind="buyer", region_code="110106")
    number = id_number(971)
    household = await registered_household(
        session,
        key=settings.hashing_key(),
        registry_id="R-971",
        serial=971,
        head_name="张建国",
        phone="13812345678",
        periods=((D(2016, 1, 1), D(2020, 12, 31)),),
        registry_organisation=baiyin,
    )
    await membership(session, cooperative=coop, household=household)
    masked = {
        "id": str(household.id),
        "registry_id": "R-971",
        "registered": True,
        "county_code": "620421",
        "village": "东湾镇砂梁村",
        "head_name": "张**",
        "phone": "138****5678",
        "id_number": "**************" + number[-4:],
    }
    # the cooperative
    listed = await client.get(f"/organisations/{coop.id}/households", headers=bearer(coop_token))
    assert listed.json()["items"][0]["household"] == masked
    assert "13812345678" not in listed.text and "张建国" not in listed.text
    # the authority in scope: masked too, until it reveals
    detail = await client.get(f"/authority/households/{household.id}", headers=bearer(baiyin_token))
    assert detail.status_code == 200
    assert {k: detail.json()[k] for k in masked} == masked
    assert detail.json()["poor_periods"] == [
        {"valid_from": "2016-01-01", "valid_until": "2020-12-31"}
    ]
    assert detail.json()["memberships"][0]["cooperative_id"] == str(coop.id)
    assert "张建国" not in detail.text
    # another authority, a buyer, the cooperative: no reveal, no detail
    reason = {"reason": "核实2024年枸杞收购记录"}
    for token, status in ((ningxia_token, 404), (buyer_token, 403), (coop_token, 403)):
        for method, url, body in (
            ("GET", f"/authority/households/{household.id}", None),
            ("POST", f"/authority/households/{household.id}/reveal", reason),
            ("GET", f"/authority/households/{household.id}/reveals", None),
        ):
            response = await client.request(method, url, headers=bearer(token), json=body)
            assert response.status_code == status, (token, url, response.text)
            assert "张建国" not in response.text and "13812345678" not in response.text
    ningxia_list = await client.get("/authority/households", headers=bearer(ningxia_token))
    assert ningxia_list.json()["items"] == []
    assert await session.scalar(select(func.count()).select_from(PersonalDataReveal)) == 0

    # a reveal needs a reason
    no_reason = await client.post(
        f"/authority/households/{household.id}/reveal", headers=bearer(baiyin_token), json={}
    )
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
    assert await session.scalar(select(func.count()).select_from(PersonalDataReveal)) == 0

    revealed = await client.post(
        f"/authority/households/{household.id}/reveal", headers=bearer(baiyin_token), json=reason
    )
    assert revealed.status_code == 200, revealed.text
    body = revealed.json()
    assert (body["head_name"], body["phone"], body["id_number_last4"]) == (
        "张建国",
        "13812345678",
        number[-4:],
    )
    assert "id_number" not in body  # the full number is never stored, so never shown
    logged = (await session.scalars(select(PersonalDataReveal))).all()
    assert len(logged) == 1
    assert (logged[0].household_id, logged[0].user_id, logged[0].organisation_id) == (
        household.id,
        official_user.id,
        baiyin.id,
    )
    assert logged[0].reason == reason["reason"] and logged[0].revealed_at is not None
    assert body["reveal"]["id"] == str(logged[0].id)

    await client.post(
        f"/authority/households/{household.id}/reveal",
        headers=bearer(baiyin_token),
        json={"reason": "第二次核查"},
    )
    log = await client.get(
        f"/authority/households/{household.id}/reveals", headers=bearer(baiyin_token)
    )
    assert [r["reason"] for r in log.json()["items"]] == ["第二次核查", reason["reason"]]
    assert {r["user_id"] for r in log.json()["items"]} == {str(official_user.id)}


async def test_authority_staff_may_reveal_but_viewers_may_not(client, session, settings):
    _, baiyin, _ = await official(session)
    staff, viewer = await make_user(session), await make_user(session)
    await add_member(session, baiyin, staff, "staff")
    await add_member(session, baiyin, viewer, "viewer")
    household = await registered_household(session, key=settings.hashing_key(), serial=981)
    url = f"/authority/households/{household.id}/reveal"
    as_staff = await client.post(
        url, headers=bearer(await token_for(session, staff)), json={"reason": "走访核实"}
    )
    assert as_staff.status_code == 200
    as_viewer = await client.post(
        url, headers=bearer(await token_for(session, viewer)), json={"reason": "走访核实"}
    )
    assert as_viewer.status_code == 403 and as_viewer.json()["code"] == "authority_only"


async def test_authority_lists_its_regions_by_county_and_poverty_on_a_day(
    client, session, settings
):
    _, _, token = await official(session)
    key = settings.hashing_key()
    jingyuan_poor = await registered_household(
        session, key=key, registry_id="J-1", serial=991, periods=((D(2016, 1, 1), D(2020, 12, 31)),)
    )
    jingyuan_never = await registered_household(
        session, key=key, registry_id="J-2", serial=992, head_name="马玉兰", village="北滩镇"
    )
    huining_poor = await registered_household(
        session,
        key=key,
        registry_id="H-1",
        serial=993,
        county_code="620422",
        periods=((D(2018, 1, 1), None),),
    )
    await registered_household(
        session, key=key, registry_id="N-1", serial=994, county_code="640424"
    )

    async def ids(**params):  # type: ignore[no-untyped-def]
        response = await client.get("/authority/households", headers=bearer(token), params=params)
        assert response.status_code == 200, response.text
        return {item["registry_id"] for item in response.json()["items"]}

    assert await ids() == {"J-1", "J-2", "H-1"}  # N-1 lies in Ningxia
    assert await ids(county_code="620421") == {"J-1", "J-2"}
    assert await ids(county_code="640424") == set()
    assert await ids(poor_on="2020-12-31") == {"J-1", "H-1"}
    assert await ids(poor_on="2021-01-01") == {"H-1"}
    assert await ids(q="北滩") == {"J-2"}
    assert await ids(q="J-") == {"J-1", "J-2"}
    assert await ids(registered="false") == set()
    first = await client.get("/authority/households", headers=bearer(token), params={"limit": 2})
    second = await client.get(
        "/authority/households",
        headers=bearer(token),
        params={"limit": 2, "cursor": first.json()["next_cursor"]},
    )
    seen = [i["id"] for i in first.json()["items"] + second.json()["items"]]
    assert sorted(seen) == sorted(str(h.id) for h in (jingyuan_poor, jingyuan_never, huining_poor))
    assert second.json()["next_cursor"] is None


# ---------------------------------------------------------------- the command line

runner = CliRunner()


@pytest.fixture
def cli_env(db_url, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MARKET_DATABASE_URL", db_url)
    monkeypatch.setenv("MARKET_SECRET_KEY", "cli-test-key")
    monkeypatch.setenv("MARKET_DATA_DIR", str(tmp_path / "data"))


def _in_db(db_url, work):  # type: ignore[no-untyped-def]
    """Run `work(session)` in a committed transaction of its own and return its result."""

    async def run():  # type: ignore[no-untyped-def]
        engine = create_async_engine(db_url)
        try:
            maker = async_sessionmaker(engine, expire_on_commit=False)
            async with maker() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_cli_import_with_progress_is_idempotent_and_reports_bad_rows(
    cli_env, db_url, clean_db, tmp_path
):
    rows = [
        registry_row("C-1", 1, head_name="杨德福", poor_from="2016-01-01", poor_until="2020-12-31"),
        registry_row("C-1", 1, head_name="杨德福", poor_from="2023-01-01"),
        registry_row("C-2", 2, county_code="640424"),
        registry_row("C-3", 3, poor_from="not a date"),
    ]
    path = tmp_path / "建档立卡户.csv"
    path.write_bytes(registry_csv(rows).encode("gb18030"))
    first = runner.invoke(cli_app, ["households", "import", str(path)])
    assert first.exit_code == 2, first.output
    assert "Importing 建档立卡户.csv" in first.output  # the progress bar
    assert "4 rows, 3 households: 2 created, 0 updated, 0 unchanged, 1 refused" in first.output
    assert "line 5: poor_from must be a date YYYY-MM-DD" in first.output

    async def stored(session):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(Household.registry_id, Household.head_name, Household.id_number_hash).order_by(
                Household.registry_id
            )
        )
        return [tuple(r) for r in rows], await session.scalar(
            select(func.count()).select_from(PoorStatusPeriod)
        )

    households, periods = _in_db(db_url, stored)
    assert [(r, n) for r, n, _ in households] == [("C-1", "杨德福"), ("C-2", "张建国")]
    number = id_number(1)
    assert households[0][2] == hmac.new(b"cli-test-key", number.encode(), hashlib.sha256).digest()
    assert periods == 2

    path.write_bytes(registry_csv(rows[:3]).encode("gb18030"))
    again = runner.invoke(cli_app, ["households", "import", str(path)])
    assert again.exit_code == 0, again.output
    assert "0 created, 0 updated, 2 unchanged, 0 refused" in again.output

    strict = tmp_path / "strict.csv"
    strict.write_text(registry_csv([registry_row("C-9", 9), rows[3]]), encoding="utf-8-sig")
    refused = runner.invoke(
        cli_app, ["households", "import", str(strict), "--mode", "all_or_nothing"]
    )
    assert refused.exit_code == 1, refused.output
    assert "line 3:" in refused.output and "nothing was imported" in refused.output
    assert _in_db(db_url, stored)[0] == households


def test_cli_import_for_an_authority_is_limited_to_its_regions(cli_env, db_url, clean_db, tmp_path):
    from tests.factories import make_org

    async def setup(session):  # type: ignore[no-untyped-def]
        user = await make_user(session)
        authority = await make_org(session, owner=user, kind="authority", region_code="620400")
        from market.organisations import service as organisations_service

        await organisations_service.set_audit_regions(
            session, organisation_id=authority.id, region_codes=["620421"], granted_by_id=user.id
        )
        return authority.id

    authority_id = _in_db(db_url, setup)
    path = tmp_path / "registry.csv"
    path.write_text(
        registry_csv([registry_row("A-1", 1), registry_row("A-2", 2, county_code="620422")])
    )
    result = runner.invoke(
        cli_app, ["households", "import", str(path), "--authority", str(authority_id)]
    )
    assert result.exit_code == 2, result.output
    assert "1 created" in result.output and "line 3: county 620422" in result.output

    async def organisations(session):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(Household.registry_id, Household.registry_organisation_id)
        )
        return [tuple(r) for r in rows]

    assert _in_db(db_url, organisations) == [("A-1", authority_id)]
    unknown = runner.invoke(
        cli_app, ["households", "import", str(path), "--authority", str(uuid.uuid4())]
    )
    assert unknown.exit_code == 1 and "no authority organisation" in unknown.output
    bad_mode = runner.invoke(cli_app, ["households", "import", str(path), "--mode", "some"])
    assert bad_mode.exit_code == 1 and "--mode" in bad_mode.output
    for args in (["households", "--help"], ["households", "import", "--help"]):
        shown = runner.invoke(cli_app, args)
        assert shown.exit_code == 0 and "Usage" in shown.output, shown.output
    assert "all_or_nothing" in shown.output and "poor_from" in shown.output
