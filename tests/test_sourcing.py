"""Lots and the sourcing ledger: exact shares at the edges, corrections, the append-only
hash chain (triggers, tampering, concurrent appends), scoping and the public trace page."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from market.sourcing import ledger, service
from tests.factories import bearer, make_user, member_with_token, token_for
from tests.factories_sourcing import buy, make_household, make_lot, make_product

D = dt.date
POOR_UNTIL_JUNE = [(D(2019, 1, 1), D(2026, 6, 30))]


@pytest.fixture
async def coop(session):
    user, organisation, token = await member_with_token(session)
    product = await make_product(session, organisation)
    return user, organisation, token, product


def test_amounts_round_half_even_to_whole_fen():
    assert service.amount_fen(1000, 4200, 1000) == 4200  # 1 kg at 42.00 yuan/kg
    assert service.amount_fen(125_500, 4200, 1000) == 527_100
    assert service.amount_fen(1, 500, 1000) == 0  # 0.5 fen → 0 (even)
    assert service.amount_fen(3, 500, 1000) == 2  # 1.5 fen → 2 (even)
    assert service.amount_fen(-3, 500, 1000) == -2


def test_share_in_basis_points_half_even():
    assert service.share_bp(1, 8) == 1250
    assert service.share_bp(1, 3) == 3333
    assert service.share_bp(2, 3) == 6667
    assert service.share_bp(1, 20_000) == 0  # 0.5 bp → 0
    assert service.share_bp(3, 20_000) == 2  # 1.5 bp → 2
    assert service.share_bp(0, 0) is None


async def test_poverty_period_edges_decide_the_share(session, coop):
    _, organisation, _, product = coop
    lot = await make_lot(session, organisation, product)
    exited = await make_household(session, organisation, poor=POOR_UNTIL_JUNE, name="李四")
    never = await make_household(session, organisation, name="王五")
    # the last day of the period is poor, the day after is not
    await buy(session, lot, exited, quantity=10_000, price=4000, on=D(2026, 6, 30))
    await buy(session, lot, exited, quantity=10_000, price=4000, on=D(2026, 7, 1))
    await buy(session, lot, never, quantity=20_000, price=4000, on=D(2026, 6, 30))
    share = await service.lot_share(session, lot.id)
    assert share.value_fen == 160_000
    assert share.poor_value_fen == 40_000
    assert share.poor_share_bp == 2500
    assert share.quantity == 40_000 and share.poor_quantity == 10_000
    assert share.households == 2 and share.poor_households == 1


async def test_open_ended_period_and_value_versus_quantity(session, coop):
    _, organisation, _, product = coop
    lot = await make_lot(session, organisation, product)
    poor = await make_household(session, organisation, poor=[(D(2024, 3, 1), None)])
    other = await make_household(session, organisation)
    await buy(session, lot, poor, quantity=1_000, price=6000, on=D(2026, 8, 1))
    await buy(session, lot, other, quantity=2_000, price=3000, on=D(2026, 8, 1))
    share = await service.lot_share(session, lot.id)
    assert share.poor_share_bp == 5000  # 60 of 120 yuan
    assert share.poor_quantity_share_bp == 3333  # 1 of 3 kg


async def test_a_lot_without_records_has_no_share(client, session, coop):
    _, organisation, token, product = coop
    response = await client.post(
        f"/organisations/{organisation.id}/lots",
        headers=bearer(token),
        json={"product_id": str(product.id), "grade": "一级"},
    )
    assert response.status_code == 201, response.text
    share = response.json()["share"]
    assert share["poor_share_bp"] is None and share["quantity"] == 0
    assert response.json()["trace_code"].startswith("620421-")


async def test_corrections_change_the_share(client, session, coop):
    _, organisation, token, product = coop
    lot = await make_lot(session, organisation, product)
    poor = await make_household(session, organisation, poor=[(D(2020, 1, 1), None)])
    other = await make_household(session, organisation)
    seq_poor = await buy(session, lot, poor, quantity=6_000, price=5000, on=D(2026, 8, 2))
    await buy(session, lot, other, quantity=4_000, price=5000, on=D(2026, 8, 2))
    base = f"/organisations/{organisation.id}/lots/{lot.id}"
    assert (await client.get(base, headers=bearer(token))).json()["share"]["poor_share_bp"] == 6000

    amended = await client.post(
        f"{base}/records/{seq_poor}/amend",
        headers=bearer(token) | {"Idempotency-Key": "amend-1"},
        json={"reason": "过磅单录入错误", "quantity": 1_000},
    )
    assert amended.status_code == 201, amended.text
    assert amended.json()["reversal"]["quantity"] == -6_000
    assert amended.json()["replacement"]["quantity"] == 1_000
    share = (await client.get(base, headers=bearer(token))).json()["share"]
    assert share["poor_share_bp"] == 2000 and share["quantity"] == 5_000

    replacement = amended.json()["replacement"]["seq"]
    reversed_ = await client.post(
        f"{base}/records/{replacement}/reverse",
        headers=bearer(token) | {"Idempotency-Key": "rev-1"},
        json={"reason": "该户本批次未交售"},
    )
    assert reversed_.status_code == 201
    share = (await client.get(base, headers=bearer(token))).json()["share"]
    assert share["poor_share_bp"] == 0 and share["poor_households"] == 0
    assert share["households"] == 1

    twice = await client.post(
        f"{base}/records/{replacement}/reverse",
        headers=bearer(token) | {"Idempotency-Key": "rev-2"},
        json={"reason": "again"},
    )
    assert twice.status_code == 409 and twice.json()["code"] == "already_reversed"
    records = (await client.get(f"{base}/records", headers=bearer(token))).json()["items"]
    assert [r["kind"] for r in records] == [
        "purchase",
        "purchase",
        "reversal",
        "purchase",
        "reversal",
    ]


async def test_appending_needs_an_idempotency_key_and_replays(client, session, coop):
    _, organisation, token, product = coop
    lot = await make_lot(session, organisation, product)
    household = await make_household(session, organisation)
    url = f"/organisations/{organisation.id}/lots/{lot.id}/records"
    body = {
        "household_id": str(household.id),
        "quantity": 25_000,
        "unit_price_fen": 4200,
        "purchase_date": "2026-08-16",
        "evidence_ref": "收购单 JY-0816-031",
    }
    missing = await client.post(url, headers=bearer(token), json=body)
    assert missing.status_code == 422 and missing.json()["code"] == "idempotency_key_required"
    first = await client.post(url, headers=bearer(token) | {"Idempotency-Key": "p-1"}, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["amount_fen"] == 105_000
    again = await client.post(url, headers=bearer(token) | {"Idempotency-Key": "p-1"}, json=body)
    assert again.json() == first.json()
    assert (await service.lot_share(session, lot.id)).records == 1

    # the platform rejects the cooperative: its records stay, it adds none (the ledger is
    # permanent and public)
    organisation.verification_status = "rejected"
    organisation.rejection_reason = "资质过期"
    await session.flush()
    refused = await client.post(url, headers=bearer(token) | {"Idempotency-Key": "p-2"}, json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "not_verified", refused.text
    seq = first.json()["seq"]
    undone = await client.post(
        f"{url}/{seq}/reverse",
        headers=bearer(token) | {"Idempotency-Key": "p-3"},
        json={"reason": "录错"},
    )
    assert undone.status_code == 403 and undone.json()["code"] == "not_verified"
    assert (await service.lot_share(session, lot.id)).records == 1


async def test_bad_purchases_are_refused_and_nothing_is_written(client, session, coop):
    _, organisation, token, product = coop
    lot = await make_lot(session, organisation, product)
    household = await make_household(session, organisation, joined_on=D(2026, 1, 1))
    url = f"/organisations/{organisation.id}/lots/{lot.id}/records"
    cases = [
        ({"quantity": 0}, "quantity"),
        ({"unit_price_fen": -1}, "unit_price_fen"),
        ({"quantity": 1.5}, "quantity"),
        ({"poor": True}, "poor"),
        ({"purchase_date": "2099-01-01"}, "purchase_date"),
        ({"purchase_date": "2025-12-31"}, "household_id"),  # not yet a member then
        # a trillion kg at ten million yuan a kg: past what a record (and a bigint) holds
        ({"quantity": 10**12, "unit_price_fen": 10**9}, "quantity"),
    ]
    for index, (change, field) in enumerate(cases):
        body = {
            "household_id": str(household.id),
            "quantity": 1_000,
            "unit_price_fen": 100,
            "purchase_date": "2026-08-01",
        } | change
        response = await client.post(
            url, headers=bearer(token) | {"Idempotency-Key": f"bad-{index}"}, json=body
        )
        assert response.status_code == 422, (change, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], (change, response.json())
    assert (await service.lot_share(session, lot.id)).records == 0


async def test_other_cooperatives_see_404(client, session, coop):
    _, organisation, _, product = coop
    lot = await make_lot(session, organisation, product)
    household = await make_household(session, organisation)
    seq = await buy(session, lot, household, quantity=1_000, price=100, on=D(2026, 8, 1))
    _, other_org, other_token = await member_with_token(session, region_code="620422")
    base = f"/organisations/{organisation.id}/lots/{lot.id}"
    for method, path, body in [
        ("GET", base, None),
        ("GET", f"{base}/records", None),
        ("POST", f"{base}/records/{seq}/reverse", {"reason": "not mine"}),
        ("GET", f"/organisations/{organisation.id}/lots", None),
    ]:
        response = await client.request(
            method, path, headers=bearer(other_token) | {"Idempotency-Key": "x"}, json=body
        )
        assert response.status_code == 404, (path, response.text)
    # their own organisation id with our lot id is not found either
    response = await client.get(
        f"/organisations/{other_org.id}/lots/{lot.id}", headers=bearer(other_token)
    )
    assert response.status_code == 404


async def test_the_ledger_refuses_update_delete_and_truncate(session, coop):
    _, organisation, _, product = coop
    lot = await make_lot(session, organisation, product)
    household = await make_household(session, organisation)
    seq = await buy(session, lot, household, quantity=1_000, price=100, on=D(2026, 8, 1))
    for statement in (
        f"UPDATE sourcing_record SET quantity = 999999 WHERE seq = {seq}",
        f"DELETE FROM sourcing_record WHERE seq = {seq}",
        "TRUNCATE sourcing_record CASCADE",
    ):
        savepoint = await session.begin_nested()
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text(statement))
        await savepoint.rollback()
    assert (await service.lot_share(session, lot.id)).quantity == 1_000


async def test_verify_names_a_record_changed_behind_the_triggers(client, session, coop):
    _, organisation, _, product = coop
    lot = await make_lot(session, organisation, product)
    household = await make_household(session, organisation)
    seqs = [
        await buy(session, lot, household, quantity=1_000 + i, price=100, on=D(2026, 8, 1))
        for i in range(4)
    ]
    _, platform_token = await _platform(session)
    ok = await client.get("/sourcing/verify", headers=bearer(platform_token))
    assert ok.status_code == 200 and ok.json()["ok"] is True
    assert ok.json()["checked"] >= 4

    await session.execute(text("SET LOCAL session_replication_role = replica"))
    await session.execute(
        text("UPDATE sourcing_record SET quantity = 5000 WHERE seq = :seq"), {"seq": seqs[2]}
    )
    await session.execute(text("SET LOCAL session_replication_role = origin"))
    broken = (await client.get("/sourcing/verify", headers=bearer(platform_token))).json()
    assert broken["ok"] is False
    assert broken["first_break_seq"] == seqs[2]
    assert "changed" in broken["reason"]


async def test_only_officials_verify(client, session, coop):
    _, _, token, _ = coop
    response = await client.get("/sourcing/verify", headers=bearer(token))
    assert response.status_code == 403


async def _platform(session):
    from tests.factories import platform_operator

    return await platform_operator(session)


async def test_twenty_concurrent_appends_form_one_chain(committing_session, engine: AsyncEngine):
    user, organisation, _ = await member_with_token(committing_session)
    product = await make_product(committing_session, organisation)
    lot = await make_lot(committing_session, organisation, product)
    households = [await make_household(committing_session, organisation) for _ in range(4)]
    await committing_session.commit()
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def append(index: int) -> int:
        async with maker() as s, s.begin():
            locked = await service.get_lot(s, lot_id=lot.id, lock=False)
            record = await service.append_purchase(
                s,
                lot=locked,
                household_id=households[index % 4].id,
                quantity=1_000 + index,
                unit_price_fen=4200,
                purchase_date=D(2026, 8, 1),
                recorded_by_id=user.id,
            )
            return record.seq

    seqs = await asyncio.gather(*[append(i) for i in range(20)])
    assert sorted(seqs) == list(range(1, 21))
    async with maker() as s:
        result = await service.verify_chain(s)
        assert result.ok and result.checked == 20 and result.head_seq == 20
        rows = [dict(r) async for r in service.iter_records(s)]
    prev = ledger.GENESIS
    for row in rows:
        assert row["prev_hash"] == prev
        prev = row["hash"]


async def test_public_trace_page_shows_aggregates_and_no_personal_data(client, session, coop):
    _, organisation, _, product = coop
    lot = await make_lot(session, organisation, product)
    poor = await make_household(session, organisation, poor=[(D(2020, 1, 1), None)], name="马秀兰")
    other = await make_household(session, organisation, name="杨志刚")
    await buy(session, lot, poor, quantity=3_000, price=5000, on=D(2026, 8, 3))
    await buy(session, lot, other, quantity=2_000, price=5000, on=D(2026, 8, 3))

    data = await client.get(f"/trace/{lot.trace_code}", headers={"Accept": "application/json"})
    assert data.status_code == 200
    body = data.json()
    assert body["poor_share_bp"] == 6000 and body["households"] == 2
    assert body["county_path"] == ["甘肃省", "白银市", "靖远县"]
    assert body["product_name_zh"] == "靖远枸杞 特级干果"

    page = await client.get(f"/trace/{lot.trace_code.lower()}", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "60.00%" in page.text and "靖远县" in page.text
    for secret in ("马秀兰", "杨志刚", str(poor.id)):
        assert secret not in page.text and secret not in data.text
    assert (await client.get("/trace/620421-NOPE0000")).status_code == 404


async def test_officials_see_lots_in_their_regions_only(client, session, coop):
    _, organisation, _, product = coop
    await make_lot(session, organisation, product)
    _, platform_token = await _platform(session)
    _, authority, authority_token = await member_with_token(
        session, kind="authority", region_code="620400"
    )
    await client.put(
        f"/platform/organisations/{authority.id}/audit-regions",
        headers=bearer(platform_token),
        json={"region_codes": ["620400"]},
    )
    _, far_authority, far_token = await member_with_token(
        session, kind="authority", region_code="640000"
    )
    await client.put(
        f"/platform/organisations/{far_authority.id}/audit-regions",
        headers=bearer(platform_token),
        json={"region_codes": ["640000"]},
    )
    mine = await client.get("/authority/lots", headers=bearer(authority_token))
    assert mine.status_code == 200 and len(mine.json()["items"]) == 1
    far = await client.get("/authority/lots", headers=bearer(far_token))
    assert far.json()["items"] == []
    buyer = await make_user(session)
    assert (
        await client.get("/authority/lots", headers=bearer(await token_for(session, buyer)))
    ).status_code == 403


async def test_stored_shares_are_reused_until_a_record_or_a_period_changes(session, coop):
    from sqlalchemy import func, select

    from market.households.models import PoorStatusPeriod
    from market.sourcing.models import StoredLotShare

    _, organisation, _, product = coop
    lot = await make_lot(session, organisation, product)
    household = await make_household(session, organisation)
    await buy(session, lot, household, quantity=1_000, price=4000, on=D(2026, 8, 1))
    first = await service.lot_share(session, lot.id)
    assert first.poor_share_bp == 0
    stored = await session.scalar(select(StoredLotShare).where(StoredLotShare.lot_id == lot.id))
    assert stored is not None and stored.records == 1

    # a new record makes the stored figures stale
    await buy(session, lot, household, quantity=3_000, price=4000, on=D(2026, 8, 2))
    assert (await service.lot_share(session, lot.id)).quantity == 4_000

    # the registry now lists the household as poor since August 2: only the second purchase
    session.add(PoorStatusPeriod(household_id=household.id, valid_from=D(2026, 8, 2)))
    await session.flush()
    assert (await service.lot_share(session, lot.id)).poor_share_bp == 7500
    # and the recomputed figures are what the full computation gives
    computed, _ = await service.compute_lot_shares(session, [lot.id])
    assert computed[lot.id] == await service.lot_share(session, lot.id)
    assert await session.scalar(select(func.count()).select_from(StoredLotShare)) == 1


async def test_concurrent_readers_store_shares_without_deadlock(committing_session, engine):
    _, organisation, _ = await member_with_token(committing_session)
    product = await make_product(committing_session, organisation)
    household = await make_household(committing_session, organisation)
    lots = []
    for index in range(6):
        lot = await make_lot(committing_session, organisation, product)
        await buy(
            committing_session, lot, household, quantity=1_000 + index, price=100, on=D(2026, 8, 1)
        )
        lots.append(lot.id)
    await committing_session.commit()
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def read(ids: list) -> dict:
        async with maker() as s, s.begin():
            return await service.lot_shares(s, ids)

    for _ in range(3):
        async with maker() as s, s.begin():
            await s.execute(text("DELETE FROM lot_share"))
        results = await asyncio.gather(*[read(lots if i % 2 else lots[::-1]) for i in range(8)])
        assert all(r == results[0] for r in results)
    assert results[0][lots[5]].quantity == 1_005
