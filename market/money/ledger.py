"""The double-entry ledger: accounts, balanced postings, balances by SQL.

Debits are positive and credits negative, so every transaction sums to zero and so does the
whole ledger. A posting names its cause (order, fulfilment, payment, refund, payout) and a
`dedupe_key`: posting the same thing twice returns the first transaction instead."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from market.money.models import LedgerAccount, LedgerEntry, LedgerTransaction

ACCOUNT_NAMES = {
    "provider_clearing": "支付通道/银行存款 Provider clearing",
    "buyer_escrow": "买家托管资金 Buyer escrow",
    "cooperative_payable": "应付合作社 Cooperative payable",
    "platform_fee_revenue": "平台服务费收入 Platform fee revenue",
    "refunds_payable": "待退款 Refunds payable",
    "payouts_in_transit": "在途结算付款 Payouts in transit",
    "platform_adjustments": "平台差额调整 Platform adjustments",
}


@dataclass(frozen=True)
class Leg:
    account_id: uuid.UUID
    amount_fen: int  # debit > 0, credit < 0


async def account(
    session: AsyncSession,
    kind: str,
    *,
    currency: str = "CNY",
    organisation_id: uuid.UUID | None = None,
    provider: str | None = None,
) -> uuid.UUID:
    """The id of an account, created on first use (concurrent first uses agree)."""
    found = await session.scalar(
        select(LedgerAccount.id).where(
            LedgerAccount.kind == kind,
            LedgerAccount.currency == currency,
            LedgerAccount.organisation_id.is_(None)
            if organisation_id is None
            else LedgerAccount.organisation_id == organisation_id,
            LedgerAccount.provider.is_(None)
            if provider is None
            else LedgerAccount.provider == provider,
        )
    )
    if found is not None:
        return found
    created = await session.scalar(
        text(
            """
            INSERT INTO ledger_account (kind, organisation_id, provider, currency)
            VALUES (:kind, :organisation_id, :provider, :currency)
            ON CONFLICT DO NOTHING RETURNING id
            """
        ),
        {
            "kind": kind,
            "organisation_id": organisation_id,
            "provider": provider,
            "currency": currency,
        },
    )
    if created is not None:
        return uuid.UUID(str(created))
    return await account(
        session, kind, currency=currency, organisation_id=organisation_id, provider=provider
    )


async def post(
    session: AsyncSession,
    *,
    kind: str,
    dedupe_key: str,
    memo: str,
    legs: list[Leg],
    order_id: uuid.UUID | None = None,
    fulfilment_id: uuid.UUID | None = None,
    payment_id: uuid.UUID | None = None,
    refund_id: uuid.UUID | None = None,
    payout_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Post one balanced transaction; None if `dedupe_key` was posted before. Legs of zero
    are dropped; the database checks the balance again at commit."""
    legs = [leg for leg in legs if leg.amount_fen != 0]
    if sum(leg.amount_fen for leg in legs) != 0:
        raise ValueError(f"unbalanced posting {kind} {dedupe_key}: {legs}")
    if not legs:
        return None
    transaction_id = await session.scalar(
        text(
            """
            INSERT INTO ledger_transaction
                (kind, dedupe_key, memo, order_id, fulfilment_id, payment_id, refund_id,
                 payout_id)
            VALUES (:kind, :dedupe_key, :memo, :order_id, :fulfilment_id, :payment_id,
                    :refund_id, :payout_id)
            ON CONFLICT (dedupe_key) DO NOTHING RETURNING id
            """
        ),
        {
            "kind": kind,
            "dedupe_key": dedupe_key,
            "memo": memo,
            "order_id": order_id,
            "fulfilment_id": fulfilment_id,
            "payment_id": payment_id,
            "refund_id": refund_id,
            "payout_id": payout_id,
        },
    )
    if transaction_id is None:
        return None
    await session.execute(
        insert(LedgerEntry),
        [
            {
                "transaction_id": transaction_id,
                "account_id": leg.account_id,
                "amount_fen": leg.amount_fen,
            }
            for leg in legs
        ],
    )
    return uuid.UUID(str(transaction_id))


async def balance(session: AsyncSession, account_id: uuid.UUID) -> int:
    """Debits minus credits of one account."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


async def payable_balances(
    session: AsyncSession, cooperative_ids: list[uuid.UUID] | None = None
) -> dict[uuid.UUID, int]:
    """What the platform owes each cooperative (positive), or the cooperative's debt
    (negative), from its payable account."""
    stmt = (
        select(LedgerAccount.organisation_id, func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerAccount.kind == "cooperative_payable")
        .group_by(LedgerAccount.organisation_id)
    )
    if cooperative_ids is not None:
        stmt = stmt.where(LedgerAccount.organisation_id.in_(cooperative_ids))
    return {org: -int(total) for org, total in (await session.execute(stmt)).all() if org}


async def trial_balance(
    session: AsyncSession,
) -> list[tuple[str, uuid.UUID | None, str | None, str, int]]:
    """Every account with its balance: (kind, organisation, provider, currency, balance)."""
    rows = await session.execute(
        select(
            LedgerAccount.kind,
            LedgerAccount.organisation_id,
            LedgerAccount.provider,
            LedgerAccount.currency,
            func.coalesce(func.sum(LedgerEntry.amount_fen), 0),
        )
        .outerjoin(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .group_by(LedgerAccount.id)
        .order_by(LedgerAccount.kind, LedgerAccount.organisation_id)
    )
    return [(k, o, p, c, int(b)) for k, o, p, c, b in rows.all()]


async def order_escrow(session: AsyncSession, order_id: uuid.UUID) -> int:
    """What escrow still holds for one order (credit balance, as a positive number)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.order_id == order_id, LedgerAccount.kind == "buyer_escrow")
    )
    return -int(total or 0)
