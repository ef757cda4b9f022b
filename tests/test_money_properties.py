"""Property-based: after any sequence of orders, bank payments (exact, short, over), refunds,
cancellations, deliveries, worker rounds, bank refunds sent and payouts, the books hold:
every ledger transaction balances, all accounts sum to zero, each cooperative's payable is
what was settled to it less fees, refunds after settlement and payouts, and no payment has
more refunded than captured."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from market.money import ledger
from market.money.models import Payment, Payout, PayoutBatch, Refund, Settlement
from tests.factories import bearer
from tests.test_listings import key
from tests.test_money import (
    import_csv,
    order,
    pay_by_transfer,
    send_bank_refunds,
    ship_and_deliver,
    shop,
    statement,
    work,
)
from tests.test_orders import orders_url

STEP = st.one_of(
    st.tuples(st.just("order"), st.integers(5, 8), st.sampled_from(["exact", "short", "over"])),
    st.tuples(st.just("deliver"), st.integers(0, 7)),
    st.tuples(st.just("refund"), st.integers(0, 7), st.integers(1, 60_000)),
    st.tuples(st.just("cancel"), st.integers(0, 7)),
    st.tuples(st.just("work")),
    st.tuples(st.just("payout"), st.booleans()),
    st.tuples(st.just("send_refunds")),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=4, max_size=12))
async def test_the_books_balance_after_any_sequence(client, session, steps):
    shop_ = await shop(session)
    await client.put(
        f"/organisations/{shop_.supply.cooperative.id}/payout-account",
        headers=bearer(shop_.supply.token),
        json={"account_name": "合作社", "account_number": "6228480012345678", "bank_name": "农行"},
    )
    orders: list[dict[str, Any]] = []
    for step in steps:
        await _apply(client, session, shop_, orders, step)
    await work(session)
    await work(session)
    await _check_books(session)


async def _apply(
    client: httpx.AsyncClient,
    session: AsyncSession,
    shop_: Any,
    orders: list[dict[str, Any]],
    step: tuple[Any, ...],
) -> None:
    kind = step[0]
    if kind == "order":
        _, quantity, how = step
        placed = await order(client, shop_, quantity)
        payment = await pay_by_transfer(client, shop_, placed)
        amount = placed["total_fen"] + {"exact": 0, "short": -700, "over": 900}[how]
        code = payment["transfer_instructions"]["reference_code"]
        imported = await import_csv(
            client, shop_, statement((amount, code, f"P{uuid.uuid4().hex[:10]}"))
        )
        assert imported.status_code == 201, imported.text
        orders.append(placed)
    elif kind == "deliver" and orders:
        placed = orders[step[1] % len(orders)]
        status = (
            await client.get(orders_url(shop_.buyer, placed["id"]), headers=bearer(shop_.token))
        ).json()
        if status["status"] == "paid" and status["fulfilments"][0]["status"] == "pending":
            await ship_and_deliver(client, shop_, placed)
    elif kind == "refund" and orders:
        placed = orders[step[1] % len(orders)]
        payment = await session.scalar(
            select(Payment).where(Payment.order_id == uuid.UUID(placed["id"]))
        )
        if payment is not None:
            response = await client.post(
                f"/platform/payments/{payment.id}/refunds",
                headers=bearer(shop_.platform) | key(),
                json={
                    "amount_fen": step[2],
                    "reason": "随机退款",
                    "fulfilment_id": placed["fulfilments"][0]["id"],
                },
            )
            assert response.status_code in (202, 409), response.text
    elif kind == "cancel" and orders:
        placed = orders[step[1] % len(orders)]
        response = await client.post(
            orders_url(shop_.buyer, placed["id"], "cancel"),
            headers=bearer(shop_.token) | key(),
            json={"reason": "随机取消"},
        )
        assert response.status_code in (200, 409), response.text
    elif kind == "work":
        await work(session)
    elif kind == "send_refunds":
        await send_bank_refunds(client, shop_)
    elif kind == "payout":
        built = await client.post(
            "/platform/payout-batches", headers=bearer(shop_.platform) | key()
        )
        assert built.status_code in (201, 409), built.text
        if built.status_code == 201 and step[1]:
            paid = await client.post(
                f"/platform/payout-batches/{built.json()['id']}/paid",
                headers=bearer(shop_.platform) | key(),
            )
            assert paid.status_code == 200, paid.text


async def _check_books(session: AsyncSession) -> None:
    unbalanced = await session.scalar(
        text(
            """
            SELECT count(*) FROM (
                SELECT e.transaction_id FROM ledger_entry e
                  JOIN ledger_account a ON a.id = e.account_id
                 GROUP BY e.transaction_id, a.currency HAVING sum(e.amount_fen) <> 0
            ) t
            """
        )
    )
    assert unbalanced == 0
    assert await session.scalar(text("SELECT coalesce(sum(amount_fen), 0) FROM ledger_entry")) == 0

    payables = await ledger.payable_balances(session)
    cooperatives = set(payables) | set(await session.scalars(select(Settlement.cooperative_id)))
    for cooperative in cooperatives:
        settled = await session.scalar(
            select(
                func.coalesce(
                    func.sum(
                        Settlement.gross_fen - Settlement.refunded_before_fen - Settlement.fee_fen
                    ),
                    0,
                )
            ).where(Settlement.cooperative_id == cooperative)
        )
        refunded_after = await session.scalar(
            text(
                """
                SELECT coalesce(sum(r.amount_fen), 0) FROM refund r
                  JOIN fulfilment f ON f.id = r.fulfilment_id
                 WHERE f.cooperative_id = :c AND r.from_payable AND r.status <> 'failed'
                """
            ),
            {"c": cooperative},
        )
        paid_out = await session.scalar(
            select(func.coalesce(func.sum(Payout.amount_fen), 0)).where(
                Payout.cooperative_id == cooperative
            )
        )
        assert payables.get(cooperative, 0) == settled - refunded_after - paid_out
    # escrow holds exactly what is neither settled nor refunded
    for payment in await session.scalars(select(Payment)):
        assert 0 <= payment.refunded_fen <= payment.captured_fen
    refunds = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(Refund.status == "succeeded")
    )
    receipts = await session.scalar(
        text(
            "SELECT coalesce(sum(e.amount_fen), 0) FROM ledger_entry e "
            "JOIN ledger_transaction t ON t.id = e.transaction_id "
            "JOIN ledger_account a ON a.id = e.account_id "
            "WHERE t.kind = 'payment_received' AND a.kind = 'provider_clearing'"
        )
    )
    paid_batches = await session.scalar(
        select(func.coalesce(func.sum(Payout.amount_fen), 0))
        .join(PayoutBatch, PayoutBatch.id == Payout.batch_id)
        .where(PayoutBatch.status == "paid")
    )
    totals: dict[str, int] = {}
    for kind, _, _, _, balance in await ledger.trial_balance(session):
        totals[kind] = totals.get(kind, 0) + balance
    assert totals.get("provider_clearing", 0) == receipts - refunds - paid_batches
    # escrow holds exactly what arrived and is neither settled nor refunded, never below zero
    shortfalls = await session.scalar(
        text(
            "SELECT coalesce(sum(e.amount_fen), 0) FROM ledger_entry e "
            "JOIN ledger_transaction t ON t.id = e.transaction_id "
            "JOIN ledger_account a ON a.id = e.account_id "
            "WHERE t.kind = 'shortfall_accepted' AND a.kind = 'platform_adjustments'"
        )
    )
    settled_out = await session.scalar(
        select(func.coalesce(func.sum(Settlement.net_fen + Settlement.fee_fen), 0))
    )
    refunded_from_escrow = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
            Refund.from_payable.is_(False), Refund.status != "failed"
        )
    )
    held = receipts + shortfalls - settled_out - refunded_from_escrow
    assert -totals.get("buyer_escrow", 0) == held
    for order_id in await session.scalars(select(Payment.order_id)):
        assert await ledger.order_escrow(session, order_id) >= 0
