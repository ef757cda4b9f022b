"""Demo money: the demo orders are paid by bank transfer through one imported bank statement
(with an unmatched line and an underpaid one waiting in the review queue), delivered parts
are settled, cooperatives have payout accounts and a payout batch is scheduled."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from market.money import service as money_service
from market.money import statements
from market.money.models import Payment
from market.organisations.models import Organisation
from payments.offline import BankAccount, OfflineBankTransfer

PROVIDERS: dict[str, Any] = {
    "offline": OfflineBankTransfer(
        BankAccount("农商桥平台资金监管账户", "6222 0000 0000 0000 000", "中国农业银行白银分行")
    )
}
HEADER = "交易日期,金额,附言,付款人,付款账号,流水号\n"


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


async def open_transfer(session: AsyncSession, order: Any) -> Payment:
    """The buyer chooses bank transfer: a payment with a reference code."""
    return await money_service.start_payment(
        session,
        providers=PROVIDERS,
        order_id=order.id,
        buyer_id=order.buyer_id,
        method="bank_transfer",
    )


async def receive_transfers(
    session: AsyncSession, paid: list[Payment], short: list[Payment], names: dict[uuid.UUID, str]
) -> None:
    """One bank statement: each of `paid` in full, each of `short` 20 yuan short (bank
    charges), and a transfer that quotes no reference."""
    today = dt.date.today().isoformat()
    lines = [HEADER]
    for n, payment in enumerate(paid + short):
        amount = payment.amount_fen - (2000 if payment in short else 0)
        lines.append(
            f"{today},{_yuan(amount)},货款 {payment.reference_code},{names[payment.buyer_id]},"
            f"6222020200{n:06d},DEMO{today.replace('-', '')}{n:04d}\n"
        )
    lines.append(
        f"{today},3600.00,定金（未写订单号）,西安雁塔果品商行,6222020299990001,DEMO-NOREF-1\n"
    )
    await statements.import_statement(
        session, lines=lines, filename=f"演示对账单-{today}.csv", user_id=None
    )


async def settle_and_schedule(session: AsyncSession) -> None:
    """Settle what is delivered (no hold in the demo), give every cooperative a payout account
    and schedule one payout batch."""
    await money_service.settle_due(session, hold=dt.timedelta(0))
    cooperatives = list(
        await session.scalars(select(Organisation).where(Organisation.kind == "cooperative"))
    )
    for n, cooperative in enumerate(cooperatives):
        await money_service.set_payout_account(
            session,
            cooperative_id=cooperative.id,
            data={
                "account_name": cooperative.name_zh,
                "account_number": f"6228 4800 {n:04d} 5678 901",
                "bank_name": "中国农业银行",
            },
        )
    await money_service.build_payout_batch(session, user_id=None)
