"""Money on the default provider (bank transfer): paying with a reference code, statement
import and its review queue, the ledger, settlement after delivery, payout batches, refunds
from cancellations, declines and dispute decisions; races, bad amounts and access rules."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from market.money import ledger
from market.money import tasks as money_tasks
from market.money.models import (
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Refund,
    StatementImport,
    StatementLine,
)
from market.orders.models import Fulfilment, Order
from payments.offline import BankAccount, OfflineBankTransfer, reference_code
from tests.conftest import _rolled_back_maker
from tests.factories import bearer, platform_operator
from tests.factories_listings import Supply, make_listing, make_supply
from tests.test_listings import key, problem
from tests.test_orders import ADDRESS, buyer, fulfilments_url, orders_url

HEADER = "交易日期,金额,附言,付款人,付款账号,流水号\n"
NO_HOLD = money_tasks.Timing(
    settlement_hold=dt.timedelta(0),
    capture_within=dt.timedelta(days=6),
    reconcile_after=dt.timedelta(minutes=15),
)


def offline() -> dict[str, Any]:
    return {"offline": OfflineBankTransfer(BankAccount("测试账户", "6222", "测试银行"))}


async def work(
    session: AsyncSession, providers: Any = None, when: money_tasks.Timing = NO_HOLD
) -> dict[str, int]:
    """One round of the money worker, inside the test's transaction."""
    connection = session.bind
    assert isinstance(connection, AsyncConnection)
    return await money_tasks.run_once(_rolled_back_maker(connection), providers or offline(), when)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def statement(*lines: tuple[int, str, str]) -> str:
    """CSV text of (amount in fen, memo, bank transaction id) lines."""
    body = "".join(
        f"2026-11-30,{yuan(amount)},{memo},北京新发地商贸有限公司,6222020200112233,{bank_id}\n"
        for amount, memo, bank_id in lines
    )
    return HEADER + body


class Shop:
    """A cooperative's listing, a buyer and a platform operator, signed in."""

    def __init__(self, supply: Supply, listing: Any, buyer: Any, token: str, platform: str):
        self.supply = supply
        self.listing = listing
        self.buyer = buyer
        self.token = token
        self.platform = platform


async def shop(session: AsyncSession, **supply: Any) -> Shop:
    s = await make_supply(session, **supply)
    listing = await make_listing(session, s)
    organisation, token = await buyer(session)
    _, platform = await platform_operator(session)
    return Shop(s, listing, organisation, token, platform)


async def order(client: httpx.AsyncClient, shop: Shop, quantity: int = 10) -> dict[str, Any]:
    response = await client.post(
        orders_url(shop.buyer),
        headers=bearer(shop.token) | key(),
        json={"lines": [{"listing_id": str(shop.listing.id), "quantity": quantity}], **ADDRESS},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def two_part_order(
    client: httpx.AsyncClient, session: AsyncSession, shop: Shop
) -> tuple[Supply, dict[str, Any]]:
    """An order of 10 units from the shop's cooperative and 10 from another (in Ningxia): two
    parts, each with its own fulfilment. Returns the other cooperative and the order."""
    other = await make_supply(session, region_code="640502")
    other_listing = await make_listing(session, other)
    response = await client.post(
        orders_url(shop.buyer),
        headers=bearer(shop.token) | key(),
        json={
            "lines": [
                {"listing_id": str(shop.listing.id), "quantity": 10},
                {"listing_id": str(other_listing.id), "quantity": 10},
            ],
            **ADDRESS,
        },
    )
    assert response.status_code == 201, response.text
    return other, response.json()


async def decline_other_part(
    client: httpx.AsyncClient, other: Supply, placed: dict[str, Any], reason: str
) -> dict[str, Any]:
    """The other cooperative of a `two_part_order` declines its part; its fulfilment as the
    answer shows it."""
    part = next(
        f for f in placed["fulfilments"] if f["cooperative_id"] == str(other.cooperative.id)
    )
    response = await client.post(
        f"/organisations/{other.cooperative.id}/fulfilments/{part['id']}/decline",
        headers=bearer(other.token) | key(),
        json={"reason": reason},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def pay_by_transfer(
    client: httpx.AsyncClient, shop: Shop, placed: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(
        orders_url(shop.buyer, placed["id"], "payments"),
        headers=bearer(shop.token) | key(),
        json={"method": "bank_transfer"},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def import_csv(
    client: httpx.AsyncClient, shop: Shop, body: str, **params: str
) -> httpx.Response:
    return await client.post(
        "/platform/statements",
        params=params,
        content=body.encode("utf-8"),
        headers=bearer(shop.platform) | key() | {"Content-Type": "text/csv"},
    )


async def paid_order(client: httpx.AsyncClient, shop: Shop, quantity: int = 10) -> dict[str, Any]:
    placed = await order(client, shop, quantity)
    payment = await pay_by_transfer(client, shop, placed)
    code = payment["transfer_instructions"]["reference_code"]
    bank_id = f"B{uuid.uuid4().hex[:12]}"
    imported = await import_csv(
        client, shop, statement((placed["total_fen"], f"货款{code}", bank_id))
    )
    assert imported.status_code == 201, imported.text
    return placed


async def balances(session: AsyncSession) -> dict[str, int]:
    """Balance per account kind (cooperative payables summed)."""
    out: dict[str, int] = {}
    for kind, _, _, _, balance in await ledger.trial_balance(session):
        out[kind] = out.get(kind, 0) + balance
    return out


async def send_bank_refunds(client: httpx.AsyncClient, shop: Shop) -> list[dict[str, Any]]:
    """The platform's bank sends every bank refund waiting to be sent, and an operator records
    each sent (as `POST /platform/refunds/{id}/sent`); the refunds as they were listed."""
    operator = bearer(shop.platform)
    listed = await client.get("/platform/bank-refunds", headers=operator)
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    for k, item in enumerate(items):
        sent = await client.post(
            f"/platform/refunds/{item['refund']['id']}/sent",
            headers=operator | key(),
            json={"bank_reference": f"BK{k:06d}"},
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "succeeded"
    return items


async def ship_and_deliver(client: httpx.AsyncClient, shop: Shop, placed: dict[str, Any]) -> None:
    fid = placed["fulfilments"][0]["id"]
    shipped = await client.post(
        fulfilments_url(shop.supply, fid, "shipments"),
        headers=bearer(shop.supply.token) | key(),
        json={"carrier": "顺丰冷运", "tracking_number": "SF1234567890", "cold_chain": False},
    )
    assert shipped.status_code == 201, shipped.text
    confirmed = await client.post(
        orders_url(shop.buyer, placed["id"], "fulfilments", fid, "confirm-delivery"),
        headers=bearer(shop.token) | key(),
    )
    assert confirmed.status_code == 200, confirmed.text


# ---------------------------------------------------------------- paying by bank transfer


async def test_a_bank_transfer_quoting_the_reference_pays_the_order_once(client, session):
    shop_ = await shop(session)
    placed = await order(client, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    instructions = payment["transfer_instructions"]
    assert payment["status"] == "pending" and payment["amount_fen"] == placed["total_fen"]
    assert instructions["amount_fen"] == placed["total_fen"]
    assert instructions["reference_code"] == reference_code(uuid.UUID(payment["id"]))
    # asking again for the same method gives the same payment (the buyer reopened the page)
    again = await pay_by_transfer(client, shop_, placed)
    assert again["id"] == payment["id"]

    body = statement(
        (placed["total_fen"], f"货款 {instructions['reference_code'].lower()} 谢谢", "B0001")
    )
    first = await import_csv(client, shop_, body, filename="农行对账单.csv")
    assert first.status_code == 201, first.text
    assert first.json() | {"id": None, "created_at": None} == {
        "id": None,
        "created_at": None,
        "filename": "农行对账单.csv",
        "line_count": 1,
        "new_count": 1,
        "matched": 1,
        "underpaid": 0,
        "overpaid": 0,
        "unmatched": 0,
    }
    read = await client.get(orders_url(shop_.buyer, placed["id"]), headers=bearer(shop_.token))
    assert read.json()["status"] == "paid"
    [paid] = (
        await client.get(
            orders_url(shop_.buyer, placed["id"], "payments"), headers=bearer(shop_.token)
        )
    ).json()
    assert paid["status"] == "succeeded" and paid["captured_fen"] == placed["total_fen"]
    assert paid["transfer_instructions"] is None
    assert await balances(session) == {
        "provider_clearing": placed["total_fen"],
        "buyer_escrow": -placed["total_fen"],
    }

    # the same statement again (or one overlapping it) changes nothing
    second = await import_csv(client, shop_, body)
    assert second.status_code == 201
    assert (second.json()["line_count"], second.json()["new_count"]) == (1, 0)
    assert await session.scalar(select(func.count()).select_from(StatementLine)) == 1
    assert await balances(session) == {
        "provider_clearing": placed["total_fen"],
        "buyer_escrow": -placed["total_fen"],
    }
    # but the bank saying two things of one transaction is not dropped in silence: refused
    # whole, the line named (another amount; or, in one file, the same id twice)
    for disagreeing in (
        statement((500, "货款", "B0001")),
        statement((700, "货款", "B0002"), (800, "货款", "B0002")),
    ):
        refused = await import_csv(client, shop_, disagreeing)
        assert "transaction" in problem(refused, 422, "bad_statement")["errors"][-1]["message"]
    assert await session.scalar(select(func.count()).select_from(StatementLine)) == 1


async def test_statement_lines_are_matched_under_over_or_unmatched_and_reviewed(client, session):
    shop_ = await shop(session)
    orders = [await order(client, shop_, 6) for _ in range(4)]
    codes = []
    for placed in orders:
        payment = await pay_by_transfer(client, shop_, placed)
        codes.append(payment["transfer_instructions"]["reference_code"])
    exact, under, over, forgot = orders
    body = statement(
        (exact["total_fen"], f"{codes[0]}", "T1"),
        (under["total_fen"] - 1500, f"{codes[1]} 扣手续费", "T2"),
        (over["total_fen"] + 10000, f"{codes[2]}", "T3"),
        (forgot["total_fen"], "货款（忘写附言）", "T4"),
        (5000, "NSQ0000000000XX 不是我们的", "T5"),  # a wrong checksum is not a code
    )
    imported = await import_csv(client, shop_, body)
    assert imported.status_code == 201, imported.text
    counts = imported.json()
    assert (counts["matched"], counts["underpaid"], counts["overpaid"], counts["unmatched"]) == (
        1,
        1,
        1,
        2,
    )
    queue = await client.get("/platform/statement-lines", headers=bearer(shop_.platform))
    assert queue.status_code == 200
    by_bank = {line["transaction_id"]: line for line in queue.json()["items"]}
    assert set(by_bank) == {"T2", "T3", "T4", "T5"}  # an exact match needs no review

    async def status_of(placed: dict[str, Any]) -> str:
        read = await client.get(orders_url(shop_.buyer, placed["id"]), headers=bearer(shop_.token))
        return str(read.json()["status"])

    assert [await status_of(o) for o in orders] == [
        "paid",
        "pending_payment",
        "paid",
        "pending_payment",
    ]

    # the underpaid one: the platform accepts the bank's charge, recorded with who and why
    confirm = await client.post(
        f"/platform/statement-lines/{by_bank['T2']['id']}/resolve",
        headers=bearer(shop_.platform) | key(),
        json={"action": "confirm", "note": "银行手续费 15 元，平台承担"},
    )
    assert confirm.status_code == 200, confirm.text
    assert confirm.json()["review"] == "resolved"
    assert confirm.json()["resolved_by_id"] is not None
    assert "手续费" in confirm.json()["resolution"]
    assert await status_of(under) == "paid"
    # the forgotten reference: assigned by hand, then it is an exact match
    assign = await client.post(
        f"/platform/statement-lines/{by_bank['T4']['id']}/resolve",
        headers=bearer(shop_.platform) | key(),
        json={"action": "assign", "reference_code": codes[3], "note": "买家电话确认"},
    )
    assert assign.status_code == 200, assign.text
    assert assign.json()["outcome"] == "matched" and assign.json()["review"] == "resolved"
    assert await status_of(forgot) == "paid"
    # a line already decided cannot be decided again; a bad action names the field
    again = await client.post(
        f"/platform/statement-lines/{by_bank['T4']['id']}/resolve",
        headers=bearer(shop_.platform) | key(),
        json={"action": "dismiss", "note": "x"},
    )
    problem(again, 409, "not_in_review")
    bad = await client.post(
        f"/platform/statement-lines/{by_bank['T5']['id']}/resolve",
        headers=bearer(shop_.platform) | key(),
        json={"action": "refund", "note": "x"},
    )
    assert problem(bad, 422, "validation_failed")["errors"][0]["field"] == "action"

    # the overpayment's excess goes back to the buyer through the worker and the bank
    await work(session)
    await send_bank_refunds(client, shop_)
    refund = await session.scalar(select(Refund).where(Refund.kind == "overpayment"))
    assert refund is not None and refund.amount_fen == 10000 and refund.status == "succeeded"
    totals = await balances(session)
    assert totals["platform_adjustments"] == 1500  # the accepted shortfall
    assert totals["refunds_payable"] == 0
    received = sum(o["total_fen"] for o in orders) - 1500 + 10000 + 5000
    assert totals["provider_clearing"] == received - 10000 - 5000  # T5 never touched the ledger
    assert sum(totals.values()) == 0


async def test_a_statement_with_a_bad_line_is_refused_whole_naming_line_and_column(client, session):
    shop_ = await shop(session)
    body = HEADER + (
        "2026-11-30,100.00,x,甲,1,G1\n"
        "2026-11-30,12.345,x,乙,2,G2\n"  # three decimals
        "2026-13-01,5.00,x,丙,3,G3\n"  # no such month
        "2026-11-30,5.00,x,丁,4,\n"  # no transaction id
        f"2026-11-30,5.00,x,戊,5,{'T' * 65}\n"  # a shifted column: longer than a bank's id
        "2026-11-30,99999999999999999.00,x,己,6,G6\n"  # past a bigint of fen
    )
    response = await import_csv(client, shop_, body)
    body_ = problem(response, 422, "bad_statement")
    fields = [e["field"] for e in body_["errors"]]
    assert fields[0].startswith("line 3") and "金额" in fields[0]
    for line in (4, 5, 6, 7):
        assert any(f.startswith(f"line {line}") for f in fields), (line, fields)
    assert await session.scalar(select(func.count()).select_from(StatementImport)) == 0
    assert await session.scalar(select(func.count()).select_from(StatementLine)) == 0
    not_utf8 = await client.post(
        "/platform/statements",
        content="交易日期,金额\n".encode("gbk"),
        headers=bearer(shop_.platform) | key() | {"Content-Type": "text/csv"},
    )
    problem(not_utf8, 422, "invalid")
    gbk = await import_csv(client, shop_, "", encoding="gbk")
    assert gbk.status_code == 422  # an empty statement says so

    # the same key and body under other parameters is another request, not a replay
    same_key = bearer(shop_.platform) | {"Idempotency-Key": "stmt-1", "Content-Type": "text/csv"}
    line = HEADER + "2026-11-30,100.00,x,甲,1,Q1\n"
    first = await client.post("/platform/statements", content=line.encode(), headers=same_key)
    assert first.status_code == 201, first.text
    other = await client.post(
        "/platform/statements?encoding=gbk", content=line.encode(), headers=same_key
    )
    problem(other, 422, "idempotency_key_mismatch")


async def test_gbk_statements_are_read_with_the_encoding_parameter(client, session):
    shop_ = await shop(session)
    placed = await order(client, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    code = payment["transfer_instructions"]["reference_code"]
    body = statement((placed["total_fen"], f"货款{code}", "GBK1"))
    response = await client.post(
        "/platform/statements",
        params={"encoding": "gbk"},
        content=body.encode("gbk"),
        headers=bearer(shop_.platform) | key() | {"Content-Type": "text/csv"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["matched"] == 1
    line = await session.scalar(select(StatementLine))
    assert line is not None and line.payer_name == "北京新发地商贸有限公司"


# ---------------------------------------------------------------- settlement and payouts


async def test_delivery_settles_to_the_cooperative_and_a_batch_pays_it_out(client, session):
    shop_ = await shop(session)
    placed = await paid_order(client, shop_)
    done = await work(session)
    assert done["settled"] == 0  # not delivered yet
    await ship_and_deliver(client, shop_, placed)
    # with the default hold nothing settles yet
    held = money_tasks.Timing(dt.timedelta(days=3), dt.timedelta(days=6), dt.timedelta(minutes=15))
    assert (await work(session, when=held))["settled"] == 0
    assert (await work(session))["settled"] == 1
    assert (await work(session))["settled"] == 0

    coop = shop_.supply
    owed = placed["goods_fen"] + placed["logistics_fen"]
    bal = await client.get(
        f"/organisations/{coop.cooperative.id}/balance", headers=bearer(coop.token)
    )
    assert bal.status_code == 200, bal.text
    assert bal.json()["payable_fen"] == owed
    assert bal.json()["awaiting_settlement_fen"] == 0
    settlements = await client.get(
        f"/organisations/{coop.cooperative.id}/settlements", headers=bearer(coop.token)
    )
    [settled] = settlements.json()["items"]
    assert settled["gross_fen"] == placed["total_fen"]
    assert (settled["fee_fen"], settled["net_fen"]) == (placed["fee_fen"], owed)
    totals = await balances(session)
    assert totals["buyer_escrow"] == 0
    assert totals["platform_fee_revenue"] == -placed["fee_fen"]
    assert totals["cooperative_payable"] == -owed

    # no payout account: nothing can be paid yet, and the batch says so
    nothing = await client.post("/platform/payout-batches", headers=bearer(shop_.platform) | key())
    problem(nothing, 409, "nothing_due")
    pasted = await client.put(  # a tab from a spreadsheet: one cell of the bank file each
        f"/organisations/{coop.cooperative.id}/payout-account",
        headers=bearer(coop.token),
        json={
            "account_name": "靖远县\t枸杞合作社",
            "account_number": "6228 4800 1234 5678 901",
            "bank_name": "中国农业银行靖远县支行",
        },
    )
    assert problem(pasted, 422, "validation_failed")["errors"][0]["field"] == "account_name"
    account = await client.put(
        f"/organisations/{coop.cooperative.id}/payout-account",
        headers=bearer(coop.token),
        json={
            "account_name": "靖远县枸杞种植专业合作社",
            "account_number": "6228 4800 1234 5678 901",
            "bank_name": "中国农业银行靖远县支行",
        },
    )
    assert account.status_code == 200, account.text
    built = await client.post("/platform/payout-batches", headers=bearer(shop_.platform) | key())
    assert built.status_code == 201, built.text
    batch = built.json()
    assert batch["total_fen"] == owed and batch["payout_count"] == 1
    [payout] = batch["payouts"]
    assert payout["amount_fen"] == owed and payout["status"] == "scheduled"
    problem(
        await client.post("/platform/payout-batches", headers=bearer(shop_.platform) | key()),
        409,
        "nothing_due",
    )
    payout_csv = await client.get(
        f"/platform/payout-batches/{batch['id']}/file", headers=bearer(shop_.platform)
    )
    assert payout_csv.status_code == 200
    assert payout_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(payout_csv.content.decode("utf-8-sig"))))
    assert rows[0][0] == "收款户名"
    assert rows[1][:4] == [
        "靖远县枸杞种植专业合作社",
        "6228 4800 1234 5678 901",
        "中国农业银行靖远县支行",
        yuan(owed),
    ]
    paid = await client.post(
        f"/platform/payout-batches/{batch['id']}/paid", headers=bearer(shop_.platform) | key()
    )
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    problem(
        await client.post(
            f"/platform/payout-batches/{batch['id']}/paid", headers=bearer(shop_.platform) | key()
        ),
        409,
        "invalid_transition",
    )
    summary = (
        await client.get(
            f"/organisations/{coop.cooperative.id}/balance", headers=bearer(coop.token)
        )
    ).json()
    assert (summary["payable_fen"], summary["paid_out_fen"]) == (0, owed)
    payouts = await client.get(
        f"/organisations/{coop.cooperative.id}/payouts", headers=bearer(coop.token)
    )
    assert [p["status"] for p in payouts.json()["items"]] == ["paid"]
    totals = await balances(session)
    assert totals["payouts_in_transit"] == 0
    assert totals["provider_clearing"] == placed["total_fen"] - owed  # the fee stays with us
    assert sum(totals.values()) == 0


async def test_a_refund_after_settlement_is_a_debt_the_next_payout_nets_off(client, session):
    shop_ = await shop(session)
    first = await paid_order(client, shop_)
    await ship_and_deliver(client, shop_, first)
    await work(session)
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(first["id"]))
    )
    assert payment is not None
    refund = await client.post(
        f"/platform/payments/{payment.id}/refunds",
        headers=bearer(shop_.platform) | key(),
        json={
            "amount_fen": 3000,
            "reason": "部分破损",
            "fulfilment_id": first["fulfilments"][0]["id"],
        },
    )
    assert refund.status_code == 202, refund.text
    assert refund.json()["from_payable"] is True and refund.json()["status"] == "pending"
    await work(session)
    coop = shop_.supply
    owed = first["goods_fen"] + first["logistics_fen"]
    summary = (
        await client.get(
            f"/organisations/{coop.cooperative.id}/balance", headers=bearer(coop.token)
        )
    ).json()
    assert summary["payable_fen"] == owed - 3000
    await client.put(
        f"/organisations/{coop.cooperative.id}/payout-account",
        headers=bearer(coop.token),
        json={"account_name": "合作社", "account_number": "6228480012345678", "bank_name": "农行"},
    )
    batch = (
        await client.post("/platform/payout-batches", headers=bearer(shop_.platform) | key())
    ).json()
    assert batch["total_fen"] == owed - 3000
    # a refund larger than what is left owed makes a debt …
    await client.post(
        f"/platform/payout-batches/{batch['id']}/paid", headers=bearer(shop_.platform) | key()
    )
    debt = await client.post(
        f"/platform/payments/{payment.id}/refunds",
        headers=bearer(shop_.platform) | key(),
        json={"amount_fen": 2000, "reason": "补偿", "fulfilment_id": first["fulfilments"][0]["id"]},
    )
    assert debt.status_code == 202, debt.text
    await work(session)
    summary = (
        await client.get(
            f"/organisations/{coop.cooperative.id}/balance", headers=bearer(coop.token)
        )
    ).json()
    assert summary["payable_fen"] == -2000
    # … that the next settlement's payout nets off
    second = await paid_order(client, shop_)
    await ship_and_deliver(client, shop_, second)
    await work(session)
    batch = (
        await client.post("/platform/payout-batches", headers=bearer(shop_.platform) | key())
    ).json()
    assert batch["total_fen"] == second["goods_fen"] + second["logistics_fen"] - 2000


async def test_concurrent_payout_batches_make_one_batch(committing_client, committing_session):
    session = committing_session
    shop_ = await shop(session)
    await session.commit()
    client = committing_client
    placed = await paid_order(client, shop_)
    await ship_and_deliver(client, shop_, placed)
    maker = _committing_maker(session)
    await money_tasks.run_once(maker, offline(), NO_HOLD)
    await client.put(
        f"/organisations/{shop_.supply.cooperative.id}/payout-account",
        headers=bearer(shop_.supply.token),
        json={"account_name": "合作社", "account_number": "6228480012345678", "bank_name": "农行"},
    )
    responses = await asyncio.gather(
        *(
            client.post("/platform/payout-batches", headers=bearer(shop_.platform) | key())
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    async with maker() as check:
        batches = await check.scalar(text("SELECT count(*) FROM payout_batch"))
        payouts = await check.scalar(text("SELECT count(*) FROM payout"))
    assert (batches, payouts) == (1, 1)


async def test_two_buyers_paying_one_order_at_once_get_one_payment(
    committing_client, committing_session
):
    """People of the buyer press "pay" at once (each request its own key): the order gets one
    live payment, the same for all of them; never a 500 from the one-live-payment rule."""
    session = committing_session
    shop_ = await shop(session)
    await session.commit()
    placed = await order(committing_client, shop_)
    url = orders_url(shop_.buyer, placed["id"], "payments")

    async def pay(method: str) -> httpx.Response:
        return await committing_client.post(
            url, headers=bearer(shop_.token) | key(), json={"method": method}
        )

    first = await asyncio.gather(*(pay("bank_transfer") for _ in range(4)))
    assert [r.status_code for r in first] == [201] * 4, [r.text for r in first]
    assert len({r.json()["id"] for r in first}) == 1
    maker = _committing_maker(session)
    async with maker() as check:
        live = await check.scalar(
            text("SELECT count(*) FROM payment WHERE order_id = :o AND status <> 'cancelled'"),
            {"o": placed["id"]},
        )
    assert live == 1


def _committing_maker(session: AsyncSession) -> Any:
    from market.db import create_sessionmaker

    return create_sessionmaker(session.bind)


# ---------------------------------------------------------------- refunds


async def test_two_concurrent_refunds_beyond_what_was_captured_one_wins(
    committing_client, committing_session
):
    session = committing_session
    shop_ = await shop(session)
    await session.commit()
    placed = await paid_order(committing_client, shop_)
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
    )
    assert payment is not None
    share = placed["total_fen"] // 2 + 100  # two of these exceed the total
    responses = await asyncio.gather(
        *(
            committing_client.post(
                f"/platform/payments/{payment.id}/refunds",
                headers=bearer(shop_.platform) | key(),
                json={"amount_fen": share, "reason": "并发退款"},
            )
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in responses) == [202, 409], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 409)
    assert refused.json()["code"] == "refund_exceeds_captured"
    assert refused.json()["refundable_fen"] == placed["total_fen"] - share
    maker = _committing_maker(session)
    await money_tasks.run_once(maker, offline(), NO_HOLD)
    async with maker() as check:
        refunded = await check.scalar(select(func.sum(Refund.amount_fen)))
        stored = await check.get(Payment, payment.id)
    assert refunded == share and stored is not None and stored.refunded_fen == share


async def test_a_refund_and_a_settlement_of_one_part_at_once_keep_escrow_whole(
    committing_client, committing_session
):
    """A platform refund naming a part arrives while a worker settles that part: it waits for
    the settlement, then takes the money from the cooperative's payable, not from an escrow
    the settlement has already emptied (both used to go through: escrow below zero)."""
    from market.money import service as money_service

    session = committing_session
    shop_ = await shop(session)
    await session.commit()
    client = committing_client
    placed = await paid_order(client, shop_)
    await ship_and_deliver(client, shop_, placed)
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
    )
    assert payment is not None
    part = placed["fulfilments"][0]["id"]
    maker = _committing_maker(session)
    async with maker() as settling, settling.begin():
        assert await money_service.settle_due(settling, hold=dt.timedelta(0)) == 1
        refund = asyncio.create_task(
            client.post(
                f"/platform/payments/{payment.id}/refunds",
                headers=bearer(shop_.platform) | key(),
                json={"amount_fen": 1000, "reason": "运输破损", "fulfilment_id": part},
            )
        )
        await asyncio.sleep(0.5)
        assert not refund.done()  # it waits for the settlement
    response = await refund
    assert response.status_code == 202, response.text
    async with maker() as check:
        stored = await check.scalar(select(Refund))
        assert stored is not None and stored.from_payable
        assert await ledger.order_escrow(check, uuid.UUID(placed["id"])) == 0


async def test_a_part_never_gets_back_more_than_it_cost(client, session):
    """A platform refund naming a part, then a dispute decided in full on it: together they
    give back at most the part's goods, freight and fee share (they gave 300 + the part's
    goods and freight before), and a further refund naming it is refused."""
    from market.orders.service import part_amounts

    shop_ = await shop(session)
    _, placed = await two_part_order(client, session, shop_)  # the other part keeps money in
    transfer = await pay_by_transfer(client, shop_, placed)
    code = transfer["transfer_instructions"]["reference_code"]
    await import_csv(client, shop_, statement((placed["total_fen"], code, "P1")))
    mine = next(
        f for f in placed["fulfilments"] if f["cooperative_id"] == str(shop_.supply.cooperative.id)
    )
    await ship_and_deliver(client, shop_, {**placed, "fulfilments": [mine]})
    part = mine["id"]
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
    )
    assert payment is not None
    url = f"/platform/payments/{payment.id}/refunds"
    operator = bearer(shop_.platform)
    first = await client.post(
        url,
        headers=operator | key(),
        json={"amount_fen": 30_000, "reason": "运输破损", "fulfilment_id": part},
    )
    assert first.status_code == 202, first.text
    dispute = await client.post(
        orders_url(shop_.buyer, placed["id"], "disputes"),
        headers=bearer(shop_.token) | key(),
        json={"fulfilment_id": part, "reason": "quality", "description": "整批霉变"},
    )
    assert dispute.status_code == 201, dispute.text
    decided = await client.post(
        f"/platform/disputes/{dispute.json()['id']}/decide",
        headers=operator | key(),
        json={"decision": "full_refund", "note": "全额退款"},
    )
    assert decided.status_code == 200, decided.text
    await work(session)
    order_row = await session.get(Order, uuid.UUID(placed["id"]))
    assert order_row is not None
    gross, _ = part_amounts(order_row, list(await session.scalars(select(Fulfilment))))[
        uuid.UUID(part)
    ]
    given = await session.scalar(
        select(func.sum(Refund.amount_fen)).where(Refund.status != "failed")
    )
    assert given == gross < placed["total_fen"]
    more = await client.post(
        url,
        headers=operator | key(),
        json={"amount_fen": 1, "reason": "再退", "fulfilment_id": part},
    )
    assert problem(more, 409, "refund_exceeds_part")["refundable_fen"] == 0


async def test_a_refund_naming_no_part_comes_out_of_the_one_part_it_can_be(client, session):
    """A platform refund that names no part of a one-cooperative order is that part's: its
    settlement is the less for it. It used to be the order's, no part's: the part was then
    settled in full from an escrow the refund had already taken from (escrow below zero, the
    platform paying the cooperative money the buyer had got back)."""
    shop_ = await shop(session)
    placed = await paid_order(client, shop_)
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
    )
    assert payment is not None
    refunded = await client.post(
        f"/platform/payments/{payment.id}/refunds",
        headers=bearer(shop_.platform) | key(),
        json={"amount_fen": 3000, "reason": "包装破损补偿"},
    )
    assert refunded.status_code == 202, refunded.text
    assert refunded.json()["fulfilment_id"] == placed["fulfilments"][0]["id"]
    await ship_and_deliver(client, shop_, placed)
    assert (await work(session))["settled"] == 1
    coop = shop_.supply
    [settled] = (
        await client.get(
            f"/organisations/{coop.cooperative.id}/settlements", headers=bearer(coop.token)
        )
    ).json()["items"]
    assert settled["refunded_before_fen"] == 3000
    assert settled["net_fen"] == placed["goods_fen"] + placed["logistics_fen"] - 3000
    totals = await balances(session)
    assert totals["buyer_escrow"] == 0
    assert sum(totals.values()) == 0


async def test_a_refund_of_a_split_order_names_its_part_unless_it_is_money_nobody_is_owed(
    client, session
):
    """With two cooperatives' parts, a platform refund that names neither gives back what the
    buyer paid beyond the order, and that excess is then not sent back a second time as an
    overpayment; one that goes beyond it is refused (409 naming the excess, nothing
    written), and once the excess is back, any unnamed one is (422 naming fulfilment_id)."""
    shop_ = await shop(session)
    _, placed = await two_part_order(client, session, shop_)
    transfer = await pay_by_transfer(client, shop_, placed)
    code = transfer["transfer_instructions"]["reference_code"]
    await import_csv(client, shop_, statement((placed["total_fen"] + 5000, code, "X1")))
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
    )
    assert payment is not None
    url = f"/platform/payments/{payment.id}/refunds"
    operator = bearer(shop_.platform)
    beyond = await client.post(
        url, headers=operator | key(), json={"amount_fen": 6000, "reason": "补偿"}
    )
    assert problem(beyond, 409, "refund_straddles_excess")["excess_fen"] == 5000
    assert await session.scalar(select(func.count()).select_from(Refund)) == 0
    excess = await client.post(
        url, headers=operator | key(), json={"amount_fen": 5000, "reason": "多付退回"}
    )
    assert excess.status_code == 202, excess.text
    assert excess.json()["fulfilment_id"] is None
    whose = await client.post(
        url, headers=operator | key(), json={"amount_fen": 1000, "reason": "补偿"}
    )
    assert problem(whose, 422, "invalid")["errors"][0]["field"] == "fulfilment_id"
    await work(session)
    await work(session)
    refunds = [(r.kind, r.amount_fen) for r in await session.scalars(select(Refund))]
    assert refunds == [("manual", 5000)]  # no overpayment refund besides
    assert await ledger.order_escrow(session, uuid.UUID(placed["id"])) == placed["total_fen"]


async def test_money_of_a_declined_part_is_nobodys_however_the_refund_names_it(client, session):
    """A two-cooperative order paid in full, one part declined: its money is owed to no part.
    A platform refund naming no part that goes beyond it is refused (409, nothing written)
    instead of being charged whole to the part that delivers; a refund naming the declined
    part counts as that money going back, so a later unnamed one comes out of the live part
    and the escrow never goes below zero when that part settles."""
    from market.orders.service import part_amounts

    shop_ = await shop(session)
    other, placed = await two_part_order(client, session, shop_)
    transfer = await pay_by_transfer(client, shop_, placed)
    code = transfer["transfer_instructions"]["reference_code"]
    await import_csv(client, shop_, statement((placed["total_fen"], code, "S1")))
    declined = await decline_other_part(client, other, placed, "冷库故障")
    order_row = await session.get(Order, uuid.UUID(placed["id"]))
    assert order_row is not None
    gross, _ = part_amounts(order_row, list(await session.scalars(select(Fulfilment))))[
        uuid.UUID(declined["id"])
    ]
    payment = await session.scalar(select(Payment).where(Payment.order_id == order_row.id))
    assert payment is not None
    url = f"/platform/payments/{payment.id}/refunds"
    operator = bearer(shop_.platform)
    straddle = await client.post(
        url, headers=operator | key(), json={"amount_fen": gross + 1, "reason": "退款"}
    )
    assert problem(straddle, 409, "refund_straddles_excess")["excess_fen"] == gross
    assert await session.scalar(select(func.count()).select_from(Refund)) == 0
    named = await client.post(
        url,
        headers=operator | key(),
        json={"amount_fen": gross, "reason": "退回未供部分", "fulfilment_id": declined["id"]},
    )
    assert named.status_code == 202, named.text
    unnamed = await client.post(
        url, headers=operator | key(), json={"amount_fen": 3000, "reason": "补偿"}
    )
    assert unnamed.status_code == 202, unnamed.text
    kept = next(
        f for f in placed["fulfilments"] if f["cooperative_id"] == str(shop_.supply.cooperative.id)
    )
    assert unnamed.json()["fulfilment_id"] == kept["id"]
    await work(session)
    await send_bank_refunds(client, shop_)
    await ship_and_deliver(client, shop_, {**placed, "fulfilments": [kept]})
    assert (await work(session))["settled"] == 1
    refunds = sorted((r.kind, r.amount_fen) for r in await session.scalars(select(Refund)))
    assert refunds == sorted([("manual", gross), ("manual", 3000)])  # no declined_part besides
    assert await ledger.order_escrow(session, order_row.id) == 0
    assert sum((await balances(session)).values()) == 0


async def test_refund_amounts_must_be_whole_positive_fen_within_the_limit(client, session):
    shop_ = await shop(session)
    placed = await paid_order(client, shop_)
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
    )
    assert payment is not None
    for amount in (0, -5, 12.5, "abc", 10**13):
        response = await client.post(
            f"/platform/payments/{payment.id}/refunds",
            headers=bearer(shop_.platform) | key(),
            json={"amount_fen": amount, "reason": "x"},
        )
        body = problem(response, 422, "validation_failed")
        assert body["errors"][0]["field"] == "amount_fen", (amount, body)
    unknown = await client.post(
        f"/platform/payments/{payment.id}/refunds",
        headers=bearer(shop_.platform) | key(),
        json={"amount_fen": 100, "reason": "x", "currency": "USD"},
    )
    assert problem(unknown, 422, "validation_failed")["errors"][0]["field"] == "currency"
    assert await session.scalar(select(func.count()).select_from(Refund)) == 0


async def test_cancelling_a_paid_order_refunds_it_in_full(client, session):
    shop_ = await shop(session)
    placed = await paid_order(client, shop_)
    cancelled = await client.post(
        orders_url(shop_.buyer, placed["id"], "cancel"),
        headers=bearer(shop_.token) | key(),
        json={"reason": "采购计划调整"},
    )
    assert cancelled.status_code == 200, cancelled.text
    done = await work(session)
    assert done["refunds_owed"] == 1 and done["refunds_sent"] == 1
    assert (await work(session))["refunds_owed"] == 0
    await send_bank_refunds(client, shop_)
    [refund] = list(await session.scalars(select(Refund)))
    assert (refund.kind, refund.amount_fen, refund.status) == (
        "cancellation",
        placed["total_fen"],
        "succeeded",
    )
    totals = await balances(session)
    assert totals["buyer_escrow"] == 0 and totals["provider_clearing"] == 0
    assert totals["refunds_payable"] == 0


async def test_a_bank_refund_goes_back_to_the_paying_account_once_the_bank_sends_it(
    client, session
):
    """A refund of a bank transfer is not paid by being recorded: it waits for the platform's
    bank. Operators see it with the account the money came from (the statement's payer,
    account and bank), get it in the bank's batch-transfer file, and record it sent with the
    bank's reference: only then does it succeed, leave refunds_payable, and the buyer hear."""
    shop_ = await shop(session)
    placed = await order(client, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    code = payment["transfer_instructions"]["reference_code"]
    with_bank = (
        "交易日期,金额,附言,付款人,付款账号,付款行,流水号\n"
        f"2026-11-30,{yuan(placed['total_fen'])},货款{code},北京新发地商贸有限公司,"
        "6222020200112233,中国工商银行北京丰台支行,BR1\n"
    )
    assert (await import_csv(client, shop_, with_bank)).status_code == 201
    cancelled = await client.post(
        orders_url(shop_.buyer, placed["id"], "cancel"),
        headers=bearer(shop_.token) | key(),
        json={"reason": "采购计划调整"},
    )
    assert cancelled.status_code == 200, cancelled.text
    await work(session)
    await work(session)  # asked once: the bank is not asked again
    [refund] = list(await session.scalars(select(Refund)))
    assert (refund.kind, refund.status) == ("cancellation", "pending")
    assert (await balances(session))["refunds_payable"] == -placed["total_fen"]
    operator = bearer(shop_.platform)
    [listed] = (await client.get("/platform/bank-refunds", headers=operator)).json()["items"]
    assert listed["refund"]["id"] == str(refund.id)
    assert (listed["payer_name"], listed["payer_account"], listed["payer_bank"]) == (
        "北京新发地商贸有限公司",
        "6222020200112233",
        "中国工商银行北京丰台支行",
    )
    assert listed["order_ref"] == uuid.UUID(placed["id"]).hex[-8:]
    assert listed["exported_at"] is None
    export_key = key()
    file = await client.post("/platform/bank-refunds/export", headers=operator | export_key)
    assert file.status_code == 200 and file.headers["x-refunds-left-out"] == "0"
    rows = list(csv.reader(io.StringIO(file.content.decode("utf-8-sig"))))
    assert rows[1][:4] == [
        "北京新发地商贸有限公司",
        "6222020200112233",
        "中国工商银行北京丰台支行",
        yuan(placed["total_fen"]),
    ]
    # in one file only: the next export holds nothing, while the same request replays
    [listed] = (await client.get("/platform/bank-refunds", headers=operator)).json()["items"]
    assert listed["exported_at"] is not None
    later = await client.post("/platform/bank-refunds/export", headers=operator | key())
    assert len(later.content.decode("utf-8-sig").splitlines()) == 1  # the header only
    replayed = await client.post("/platform/bank-refunds/export", headers=operator | export_key)
    assert replayed.content == file.content
    # only operators; a bad reference is refused and changes nothing; a key is needed
    url = f"/platform/refunds/{refund.id}/sent"
    problem(
        await client.post(url, headers=bearer(shop_.token) | key(), json={"bank_reference": "X"}),
        403,
        "platform_only",
    )
    for bad in ({"bank_reference": ""}, {"bank_reference": "有 空格"}, {"reference": "BK1"}):
        answer = await client.post(url, headers=operator | key(), json=bad)
        assert problem(answer, 422, "validation_failed")["errors"][0]["field"] in (
            "bank_reference",
            "reference",
        )
    keyless = await client.post(url, headers=operator, json={"bank_reference": "BK1"})
    problem(keyless, 422, "idempotency_key_required")
    await session.refresh(refund)
    assert refund.status == "pending"
    sent = await client.post(url, headers=operator | key(), json={"bank_reference": "BK20261201"})
    assert sent.status_code == 200, sent.text
    assert (sent.json()["status"], sent.json()["bank_reference"]) == ("succeeded", "BK20261201")
    again = await client.post(url, headers=operator | key(), json={"bank_reference": "BK2"})
    assert problem(again, 409, "invalid_transition")["current_status"] == "succeeded"
    problem(
        await client.post(
            f"/platform/refunds/{uuid.uuid4()}/sent",
            headers=operator | key(),
            json={"bank_reference": "BK3"},
        ),
        404,
        "not_found",
    )
    totals = await balances(session)
    assert totals["refunds_payable"] == 0 and totals["buyer_escrow"] == 0
    assert totals["provider_clearing"] == 0
    told = await session.scalar(text("SELECT body FROM notification WHERE kind = 'refund_paid'"))
    assert told is not None and yuan(placed["total_fen"]) in told
    assert (await client.get("/platform/bank-refunds", headers=operator)).json()["items"] == []

    # the payer's bank sends the transfer back: the refund waits again, to the account given
    bounced_url = f"/platform/refunds/{refund.id}/bounced"
    half = await client.post(
        bounced_url,
        headers=operator | key(),
        json={"reason": "户名与账号不符", "account_name": "新发地商贸", "account_number": "6222"},
    )
    assert problem(half, 422, "invalid")["errors"][0]["field"] == "bank_name"
    bounced = await client.post(
        bounced_url,
        headers=operator | key(),
        json={
            "reason": "户名与账号不符",
            "account_name": "北京新发地商贸有限公司",
            "account_number": "6222 0202 0011 2234",
            "bank_name": "中国工商银行北京丰台支行",
        },
    )
    assert bounced.status_code == 200, bounced.text
    assert (bounced.json()["status"], bounced.json()["bank_reference"]) == ("pending", None)
    totals = await balances(session)
    assert totals["refunds_payable"] == -placed["total_fen"]
    assert totals["provider_clearing"] == placed["total_fen"]
    told = await session.scalar(text("SELECT body FROM notification WHERE kind = 'refund_bounced'"))
    assert told is not None and "户名与账号不符" in told
    memo = await session.scalar(
        text("SELECT memo FROM ledger_transaction WHERE kind = 'refund_bounced'")
    )
    assert memo is not None and "BK20261201" in memo and "recorded by" in memo
    assert "None" not in memo  # the operator who recorded it
    [waiting] = (await client.get("/platform/bank-refunds", headers=operator)).json()["items"]
    assert (waiting["payer_account"], waiting["exported_at"]) == ("6222 0202 0011 2234", None)
    again_file = await client.post("/platform/bank-refunds/export", headers=operator | key())
    rows = list(csv.reader(io.StringIO(again_file.content.decode("utf-8-sig"))))
    assert [row[1] for row in rows[1:]] == ["6222 0202 0011 2234"]
    problem(
        await client.post(bounced_url, headers=operator | key(), json={"reason": "再次退回"}),
        409,
        "invalid_transition",
    )
    # the bank may use its reference again: the second sending is posted all the same
    resent = await client.post(url, headers=operator | key(), json={"bank_reference": "BK20261201"})
    assert resent.status_code == 200 and resent.json()["status"] == "succeeded"
    totals = await balances(session)
    assert totals["refunds_payable"] == 0 and totals["provider_clearing"] == 0
    assert sum(totals.values()) == 0


async def test_a_bank_refund_recorded_sent_twice_at_once_is_paid_once(
    committing_client, committing_session
):
    session = committing_session
    shop_ = await shop(session)
    await session.commit()
    client = committing_client
    placed = await paid_order(client, shop_)
    cancelled = await client.post(
        orders_url(shop_.buyer, placed["id"], "cancel"),
        headers=bearer(shop_.token) | key(),
        json={"reason": "采购计划调整"},
    )
    assert cancelled.status_code == 200, cancelled.text
    maker = _committing_maker(session)
    await money_tasks.run_once(maker, offline(), NO_HOLD)
    async with maker() as check:
        refund = await check.scalar(select(Refund))
    assert refund is not None and refund.status == "pending"
    # the statement named no payer's bank: left out of the bank's file, for a person to send
    file = await client.post(
        "/platform/bank-refunds/export", headers=bearer(shop_.platform) | key()
    )
    assert file.headers["x-refunds-left-out"] == "1"
    assert len(file.content.decode("utf-8-sig").splitlines()) == 1  # the header only
    answers = await asyncio.gather(
        *(
            client.post(
                f"/platform/refunds/{refund.id}/sent",
                headers=bearer(shop_.platform) | key(),
                json={"bank_reference": f"BK{k}"},
            )
            for k in range(2)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    async with maker() as check:
        paid = await check.scalar(
            text("SELECT count(*) FROM ledger_transaction WHERE kind = 'refund_paid'")
        )
        assert paid == 1


async def test_a_cooperative_that_declined_hears_nothing_more_of_the_order(client, session):
    """Declined before payment: the buyer pays the rest, and only the cooperative still in
    the order is told to pack and ship."""
    shop_ = await shop(session)
    other, placed = await two_part_order(client, session, shop_)
    await decline_other_part(client, other, placed, "缺货")
    payment = await pay_by_transfer(client, shop_, placed)
    code = payment["transfer_instructions"]["reference_code"]
    await import_csv(client, shop_, statement((payment["amount_fen"], code, "D9")))
    await work(session)
    told = dict(
        list(
            await session.execute(
                text(
                    "SELECT organisation_id, count(*) FROM notification "
                    "WHERE kind = 'order_paid' GROUP BY organisation_id"
                )
            )
        )
    )
    assert told == {shop_.supply.cooperative.id: 1}


async def test_a_part_declined_before_the_transfer_of_the_whole_order_is_refunded(client, session):
    """The buyer was asked to transfer the whole order; a cooperative declines its part; the
    transfer of the whole amount arrives all the same: the order is paid and the part's goods,
    freight and fee share go back (it was kept, matched as exactly what the payment asked)."""
    from market.orders.service import part_amounts

    shop_ = await shop(session)
    other, placed = await two_part_order(client, session, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    declined_part = await decline_other_part(client, other, placed, "缺货")
    code = payment["transfer_instructions"]["reference_code"]
    await import_csv(client, shop_, statement((placed["total_fen"], code, "W1")))
    await work(session)
    await work(session)  # nothing more the second time
    await send_bank_refunds(client, shop_)
    order_row = await session.get(Order, uuid.UUID(placed["id"]), populate_existing=True)
    assert order_row is not None and order_row.status == "paid"
    fulfilments = list(await session.scalars(select(Fulfilment)))
    gross, _ = part_amounts(order_row, fulfilments)[uuid.UUID(declined_part["id"])]
    refunds = [(r.kind, r.amount_fen, r.status) for r in await session.scalars(select(Refund))]
    assert refunds == [("declined_part", gross, "succeeded")]


async def test_a_declined_part_and_a_decided_dispute_are_refunded_from_escrow(client, session):
    shop_ = await shop(session)
    other, placed = await two_part_order(client, session, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    code = payment["transfer_instructions"]["reference_code"]
    await import_csv(client, shop_, statement((placed["total_fen"], code, "D1")))
    parts = {f["cooperative_id"]: f for f in placed["fulfilments"]}
    declined_part = await decline_other_part(client, other, placed, "冷库故障")
    assert (declined_part["status"], declined_part["decline_reason"]) == ("cancelled", "冷库故障")
    await work(session)
    await send_bank_refunds(client, shop_)
    refund = await session.scalar(select(Refund).where(Refund.kind == "declined_part"))
    fulfilments = list(await session.scalars(select(Fulfilment).order_by(Fulfilment.id)))
    order_row = await session.get(Order, uuid.UUID(placed["id"]))
    assert order_row is not None and order_row.status == "paid"
    from market.orders.service import part_amounts

    gross, _ = part_amounts(order_row, fulfilments)[uuid.UUID(declined_part["id"])]
    assert refund is not None and refund.amount_fen == gross and refund.status == "succeeded"
    # the buyer is told the amount it is refunded: goods, freight and the part's fee share
    told = await session.scalar(text("SELECT body FROM notification WHERE kind = 'part_declined'"))
    assert told is not None and yuan(gross) in told, (told, yuan(gross))

    # the other part is delivered, disputed and partly refunded by decision
    kept = parts[str(shop_.supply.cooperative.id)]
    await ship_and_deliver(client, shop_, {**placed, "fulfilments": [kept]})
    dispute = await client.post(
        orders_url(shop_.buyer, placed["id"], "disputes"),
        headers=bearer(shop_.token) | key(),
        json={"fulfilment_id": kept["id"], "reason": "quality", "description": "部分霉变"},
    )
    assert dispute.status_code == 201, dispute.text
    assert (await work(session))["settled"] == 0  # disputed: held
    decided = await client.post(
        f"/platform/disputes/{dispute.json()['id']}/decide",
        headers=bearer(shop_.platform) | key(),
        json={"decision": "partial_refund", "refund_fen": 5000, "note": "照片为证"},
    )
    assert decided.status_code == 200, decided.text
    done = await work(session)
    assert done["refunds_owed"] == 1 and done["settled"] == 1
    dispute_refund = await session.scalar(select(Refund).where(Refund.kind == "dispute"))
    assert dispute_refund is not None and dispute_refund.amount_fen == 5000
    assert dispute_refund.from_payable is False  # decided before settlement: from escrow
    owed = kept["goods_fen"] + kept["logistics_fen"] - 5000
    summary = (
        await client.get(
            f"/organisations/{shop_.supply.cooperative.id}/balance",
            headers=bearer(shop_.supply.token),
        )
    ).json()
    assert summary["payable_fen"] == owed
    totals = await balances(session)
    assert totals["buyer_escrow"] == 0 and sum(totals.values()) == 0


async def test_a_part_refunded_by_a_dispute_and_then_declined_is_refunded_once(client, session):
    """A dispute decided (full refund: goods and freight) before shipment, then the cooperative
    declines that part: the declined part's refund is only what the dispute did not already
    give back (its share of the fee), not the whole part again."""
    from market.orders.service import part_amounts

    shop_ = await shop(session)
    other, placed = await two_part_order(client, session, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    code = payment["transfer_instructions"]["reference_code"]
    await import_csv(client, shop_, statement((placed["total_fen"], code, "D1")))
    part = {f["cooperative_id"]: f for f in placed["fulfilments"]}[str(other.cooperative.id)]
    dispute = await client.post(
        orders_url(shop_.buyer, placed["id"], "disputes"),
        headers=bearer(shop_.token) | key(),
        json={"fulfilment_id": part["id"], "reason": "not_delivered", "description": "迟迟未发货"},
    )
    assert dispute.status_code == 201, dispute.text
    decided = await client.post(
        f"/platform/disputes/{dispute.json()['id']}/decide",
        headers=bearer(shop_.platform) | key(),
        json={"decision": "full_refund", "note": "全额退款"},
    )
    assert decided.status_code == 200, decided.text
    assert (await work(session))["refunds_owed"] == 1
    declined = await client.post(
        f"/organisations/{other.cooperative.id}/fulfilments/{part['id']}/decline",
        headers=bearer(other.token) | key(),
        json={"reason": "冷库故障"},
    )
    assert declined.status_code == 200, declined.text
    await work(session)  # the part's fee share, which the dispute's refund did not include
    refunds = list(await session.scalars(select(Refund).where(Refund.status != "failed")))
    assert sorted(r.kind for r in refunds) == ["declined_part", "dispute"]
    order_row = await session.get(Order, uuid.UUID(placed["id"]))
    assert order_row is not None
    fulfilments = list(await session.scalars(select(Fulfilment)))
    gross, _ = part_amounts(order_row, fulfilments)[uuid.UUID(part["id"])]
    assert sum(r.amount_fen for r in refunds) == gross
    # escrow holds exactly the part still to be delivered (a credit: negative)
    kept = {f["cooperative_id"]: f for f in placed["fulfilments"]}[str(shop_.supply.cooperative.id)]
    kept_gross, _ = part_amounts(order_row, fulfilments)[uuid.UUID(kept["id"])]
    totals = await balances(session)
    assert totals["buyer_escrow"] == -kept_gross and sum(totals.values()) == 0


# ---------------------------------------------------------------- the ledger itself


async def test_the_database_refuses_an_unbalanced_or_edited_ledger(session):
    escrow = await ledger.account(session, "buyer_escrow")
    revenue = await ledger.account(session, "platform_fee_revenue")
    with pytest.raises(ValueError):
        await ledger.post(
            session,
            kind="test",
            dedupe_key="unbalanced-in-python",
            memo="x",
            legs=[ledger.Leg(escrow, 100), ledger.Leg(revenue, -99)],
        )
    async with session.begin_nested():
        posted = await ledger.post(
            session,
            kind="test",
            dedupe_key="balanced",
            memo="x",
            legs=[ledger.Leg(escrow, 100), ledger.Leg(revenue, -100)],
        )
    assert posted is not None
    # posting the same key again is a no-op
    assert (
        await ledger.post(
            session,
            kind="test",
            dedupe_key="balanced",
            memo="x",
            legs=[ledger.Leg(escrow, 100), ledger.Leg(revenue, -100)],
        )
        is None
    )
    # straight SQL cannot leave a transaction unbalanced: refused at commit (deferred)
    with pytest.raises(DBAPIError, match="does not balance"):
        async with session.begin_nested():
            tx = await session.scalar(
                text(
                    "INSERT INTO ledger_transaction (kind, dedupe_key, memo) "
                    "VALUES ('test', 'raw', 'x') RETURNING id"
                )
            )
            await session.execute(
                text(
                    "INSERT INTO ledger_entry (transaction_id, account_id, amount_fen) "
                    "VALUES (:t, :a, 5)"
                ),
                {"t": tx, "a": escrow},
            )
            await session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    for sql in (
        "UPDATE ledger_entry SET amount_fen = amount_fen * 2",
        "DELETE FROM ledger_entry",
        "UPDATE ledger_transaction SET memo = 'rewritten'",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with session.begin_nested():
                await session.execute(text(sql))
    assert await ledger.balance(session, escrow) == 100
    entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
    transactions = await session.scalar(select(func.count()).select_from(LedgerTransaction))
    assert (entries, transactions) == (2, 1)


# ---------------------------------------------------------------- access


async def test_payments_are_private_and_platform_actions_need_an_operator(client, session):
    shop_ = await shop(session)
    placed = await paid_order(client, shop_)
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
    )
    assert payment is not None
    stranger, stranger_token = await buyer(session)
    # another buyer: 404 on the order's payments, and paying it
    problem(
        await client.get(
            orders_url(stranger, placed["id"], "payments"), headers=bearer(stranger_token)
        ),
        404,
        "not_found",
    )
    problem(
        await client.post(
            orders_url(stranger, placed["id"], "payments"),
            headers=bearer(stranger_token) | key(),
            json={"method": "bank_transfer"},
        ),
        404,
        "not_found",
    )
    problem(
        await client.get(
            orders_url(shop_.buyer, placed["id"], "payments"), headers=bearer(stranger_token)
        ),
        404,
        "not_found",
    )
    # another cooperative's balance: 404
    other = await make_supply(session, region_code="640502")
    problem(
        await client.get(
            f"/organisations/{shop_.supply.cooperative.id}/balance", headers=bearer(other.token)
        ),
        404,
        "not_found",
    )
    # buyers and cooperatives cannot act as the platform
    for token in (shop_.token, shop_.supply.token):
        for method, url in (
            ("POST", f"/platform/payments/{payment.id}/refunds"),
            ("POST", "/platform/payout-batches"),
            ("GET", "/platform/statement-lines"),
            ("GET", "/platform/ledger"),
        ):
            response = await client.request(
                method,
                url,
                headers=bearer(token) | key(),
                json={"amount_fen": 100, "reason": "x"} if "refunds" in url else None,
            )
            problem(response, 403, "platform_only")
    ledger_read = await client.get("/platform/ledger", headers=bearer(shop_.platform))
    assert ledger_read.status_code == 200 and ledger_read.json()["total_fen"] == 0
    # card payments need Stripe, which is not configured here: the field is named
    other_order = await order(client, shop_)
    card = await client.post(
        orders_url(shop_.buyer, other_order["id"], "payments"),
        headers=bearer(shop_.token) | key(),
        json={"method": "card"},
    )
    assert problem(card, 422, "invalid")["errors"][0]["field"] == "method"
    # a paid order cannot be paid again
    again = await client.post(
        orders_url(shop_.buyer, placed["id"], "payments"),
        headers=bearer(shop_.token) | key(),
        json={"method": "bank_transfer"},
    )
    assert problem(again, 409, "order_not_payable")["current_status"] == "paid"


async def test_money_that_arrives_after_the_order_expired_goes_back(client, session):
    shop_ = await shop(session)
    placed = await order(client, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    await session.execute(
        update(Order)
        .where(Order.id == uuid.UUID(placed["id"]))
        .values(payment_due_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    )
    code = payment["transfer_instructions"]["reference_code"]
    imported = await import_csv(client, shop_, statement((placed["total_fen"], code, "LATE1")))
    assert imported.status_code == 201, imported.text
    order_row = await session.get(Order, uuid.UUID(placed["id"]), populate_existing=True)
    assert order_row is not None and order_row.status == "expired"
    await work(session)
    await send_bank_refunds(client, shop_)
    refund = await session.scalar(select(Refund))
    assert refund is not None and refund.kind == "late_payment"
    assert refund.amount_fen == placed["total_fen"] and refund.status == "succeeded"


async def test_every_transfer_beyond_what_is_due_goes_back_and_a_part_paid_order_keeps_its_method(
    client, session
):
    shop_ = await shop(session)
    placed = await order(client, shop_)
    payment = await pay_by_transfer(client, shop_, placed)
    code = payment["transfer_instructions"]["reference_code"]
    # half now: the rest is still owed, and switching to another method is refused
    half = placed["total_fen"] // 2
    await import_csv(client, shop_, statement((half, code, "H1")))
    [read] = (
        await client.get(
            orders_url(shop_.buyer, placed["id"], "payments"), headers=bearer(shop_.token)
        )
    ).json()
    assert read["status"] == "pending" and read["captured_fen"] == half
    assert read["transfer_instructions"]["amount_fen"] == placed["total_fen"] - half
    from market.money.service import METHOD_PROVIDER

    assert METHOD_PROVIDER["card"] == "stripe"
    # the rest, then the same amount again by mistake, then once more
    await import_csv(
        client,
        shop_,
        statement(
            (placed["total_fen"] - half, code, "H2"),
            (700, code, "H3"),
        ),
    )
    await work(session)
    await import_csv(client, shop_, statement((300, code, "H4")))
    await work(session)
    await send_bank_refunds(client, shop_)
    refunds = list(await session.scalars(select(Refund).order_by(Refund.amount_fen.desc())))
    assert [(r.kind, r.amount_fen, r.status) for r in refunds] == [
        ("overpayment", 700, "succeeded"),
        ("overpayment", 300, "succeeded"),
    ]
    lines = list(
        await session.scalars(select(StatementLine).order_by(StatementLine.transaction_id))
    )
    assert [line.outcome for line in lines] == ["underpaid", "matched", "overpaid", "overpaid"]
    assert [line.review for line in lines] == ["resolved", "none", "open", "open"]
    totals = await balances(session)
    assert totals["buyer_escrow"] == -placed["total_fen"] and sum(totals.values()) == 0


async def test_payment_reads_for_buyers_and_operators(client, session):
    shop_ = await shop(session)
    first = await paid_order(client, shop_)
    second = await order(client, shop_)
    pending = await pay_by_transfer(client, shop_, second)
    page = await client.get(
        f"/organisations/{shop_.buyer.id}/payments",
        params={"limit": 1},
        headers=bearer(shop_.token),
    )
    assert page.status_code == 200, page.text
    rest = await client.get(
        f"/organisations/{shop_.buyer.id}/payments",
        params={"limit": 1, "cursor": page.json()["next_cursor"]},
        headers=bearer(shop_.token),
    )
    assert rest.json()["next_cursor"] is None
    # (one test transaction gives both the same created_at: the order between them is the id's)
    both = {p["order_id"]: p for p in page.json()["items"] + rest.json()["items"]}
    assert set(both) == {first["id"], second["id"]}
    paid = both[first["id"]]
    assert paid["status"] == "succeeded" and both[second["id"]]["id"] == pending["id"]
    too_many = await client.get(
        f"/organisations/{shop_.buyer.id}/payments",
        params={"limit": 10_000},
        headers=bearer(shop_.token),
    )
    assert too_many.status_code == 422
    seen = await client.get(f"/platform/payments/{paid['id']}", headers=bearer(shop_.platform))
    assert seen.status_code == 200 and seen.json()["captured_fen"] == first["total_fen"]
    problem(
        await client.get(f"/platform/payments/{uuid.uuid4()}", headers=bearer(shop_.platform)),
        404,
        "not_found",
    )
    # the OpenAPI document shows how to pay and how to import a statement
    spec = (await client.get("/openapi.json")).json()
    pay = spec["paths"]["/organisations/{organisation_id}/orders/{order_id}/payments"]["post"]
    assert "Idempotency-Key" in pay["description"]
    statement_body = spec["paths"]["/platform/statements"]["post"]["requestBody"]["content"]
    assert "交易日期" in statement_body["text/csv"]["example"]
