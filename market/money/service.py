"""Payments, refunds, the webhook inbox, settlement and payouts.

One mechanism keeps money and orders in step: our record of a payment follows the provider's
(fetched, never trusted from an event's copy) and only moves forward; what must happen next
(capture on shipment, void of a dead order's authorisation, refunds owed after cancellations,
declines and dispute decisions, settlement after delivery) is derived from the orders' state by
idempotent worker steps, each claimed with FOR UPDATE SKIP LOCKED. Every movement of money is
one balanced ledger posting with a dedupe key, so a retry or a second worker posts nothing."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from market.db import among, new_id, short_ref, utcnow
from market.errors import Conflict, Invalid, MarketError, NotFound
from market.money import ledger, states
from market.money.ledger import Leg
from market.money.models import (
    LedgerTransaction,
    Payment,
    Payout,
    PayoutAccount,
    PayoutBatch,
    Refund,
    Settlement,
    StatementLine,
    WebhookEvent,
)
from market.notifications import service as notifications_service
from market.orders import service as orders_service
from market.orders.models import Dispute, Fulfilment, Order
from market.organisations import service as organisations_service
from market.pagination import PageParams, paginate
from payments.base import (
    EventKind,
    PaymentProvider,
    PaymentRequest,
    PaymentStatus,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderUnavailable,
    RefundStatus,
)

log = logging.getLogger("market.money")

Providers = Mapping[str, PaymentProvider]
METHOD_PROVIDER = {
    "bank_transfer": "offline",
    "card": "stripe",
    "alipay": "stripe",
    "wechat_pay": "stripe",
}
METHOD_WORDS = {
    "bank_transfer": "对公转账",
    "card": "银行卡",
    "alipay": "支付宝",
    "wechat_pay": "微信支付",
}


class ProviderDown(MarketError):
    status = 503
    code = "payment_provider_unavailable"
    title = "Payment provider unavailable"


class ProviderRefused(MarketError):
    status = 502
    code = "payment_provider_refused"
    title = "Payment provider refused"


def _provider(providers: Providers, name: str) -> PaymentProvider:
    try:
        return providers[name]
    except KeyError:
        raise ProviderDown(f"The payment provider {name!r} is not configured here.") from None


# ---------------------------------------------------------------- amounts per part


def collectable_fen(order: Order, fulfilments: list[Fulfilment]) -> int:
    """What the buyer owes now: the order total less the parts cooperatives declined."""
    amounts = orders_service.part_amounts(order, fulfilments)
    declined = sum(amounts[f.id][0] for f in fulfilments if f.decline_reason is not None)
    return order.total_fen - declined


# ---------------------------------------------------------------- reading


async def get_payment(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    buyer_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Payment:
    stmt = select(Payment).where(Payment.id == payment_id)
    if buyer_id is not None:
        stmt = stmt.where(Payment.buyer_id == buyer_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    payment = await session.scalar(stmt)
    if payment is None:
        raise NotFound("No such payment.")
    return payment


async def payments_of_order(session: AsyncSession, order_id: uuid.UUID) -> list[Payment]:
    return list(
        await session.scalars(
            select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_at)
        )
    )


async def list_payments(
    session: AsyncSession, *, buyer_id: uuid.UUID, page: PageParams
) -> tuple[list[Payment], str | None]:
    stmt = select(Payment).where(Payment.buyer_id == buyer_id)
    return await paginate(session, stmt, page, [Payment.created_at, Payment.id], descending=True)


async def refunds_of(session: AsyncSession, payment_ids: list[uuid.UUID]) -> list[Refund]:
    if not payment_ids:
        return []
    return list(
        await session.scalars(
            select(Refund).where(Refund.payment_id.in_(payment_ids)).order_by(Refund.created_at)
        )
    )


async def get_refund(session: AsyncSession, *, refund_id: uuid.UUID) -> Refund:
    refund = await session.get(Refund, refund_id)
    if refund is None:
        raise NotFound("No such refund.")
    return refund


# ---------------------------------------------------------------- paying


# how long an order whose card authorisation lapsed before anything shipped waits for a new
# payment (its stock stays reserved meanwhile)
LAPSED_PAYMENT_WAIT = dt.timedelta(hours=24)
# a lock on a name until the transaction ends (the names: "opening payment <order>", "order
# money <order>")
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def start_payment(
    session: AsyncSession,
    *,
    providers: Providers,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    method: str,
) -> Payment:
    """Open a payment for an unpaid order through the provider of `method`. The buyer gets
    transfer instructions (bank transfer) or a client secret for the front end (Stripe). A
    pending payment by another method is cancelled first: one live payment per order."""
    await orders_service.get_order(session, order_id=order_id, buyer_id=buyer_id)  # 404 first
    # One opening of a payment per order at a time, before anything is read: a concurrent
    # request's new payment is then seen (and reused or replaced) instead of a second live
    # one breaking the one-live-payment rule. (Reading the payments again once the order is
    # held locked them after the order, against the order every writer takes: deadlocks.)
    await session.execute(_ADVISORY_LOCK, {"key": f"opening payment {order_id}"})
    # payments before their order, as every other writer (webhooks, statements) takes them
    existing = list(
        await session.scalars(
            select(Payment)
            .where(Payment.order_id == order_id)
            .order_by(Payment.created_at)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    order = await orders_service.get_order(session, order_id=order_id, buyer_id=buyer_id, lock=True)
    if order.status != "pending_payment" or order.payment_due_at <= utcnow():
        raise Conflict(
            "This order is not waiting for payment"
            + (" (its payment time has passed)." if order.status == "pending_payment" else "."),
            code="order_not_payable",
            current_status=order.status,
        )
    provider_name = METHOD_PROVIDER[method]
    if provider_name not in providers:
        raise Invalid.field(
            "method",
            f"{METHOD_WORDS[method]} is not available on this platform; pay by bank transfer "
            "(bank_transfer).",
        )
    provider = providers[provider_name]
    if method not in provider.capture_methods:
        raise Invalid.field(
            "method",
            f"{METHOD_WORDS[method]} is not enabled on this platform; choose one of: "
            + ", ".join(
                m
                for m, p in METHOD_PROVIDER.items()
                if p in providers and (m in providers[p].capture_methods)
            )
            + ".",
        )
    fulfilments = await orders_service.fulfilments_of(session, [order.id])
    amount = collectable_fen(order, fulfilments)
    if amount > provider.max_amount:
        raise Invalid.field(
            "method",
            f"{notifications_service.yuan(amount)} is more than {METHOD_WORDS[method]} accepts "
            f"in one payment ({notifications_service.yuan(provider.max_amount)}); pay by bank "
            "transfer (bank_transfer) instead.",
            code="amount_above_provider_limit",
        )
    for live in existing:
        if live.status == "cancelled":
            continue
        if live.status != "pending":
            raise Conflict(
                "This order is already paid.", code="already_paid", current_status=live.status
            )
        if live.method == method and live.amount_fen == amount:
            return live  # the buyer opened the payment page again
        if live.captured_fen > 0:
            raise Conflict(
                f"{notifications_service.yuan(live.captured_fen)} of this order has arrived by "
                f"bank transfer; transfer the remaining "
                f"{notifications_service.yuan(live.amount_fen - live.captured_fen)} quoting "
                f"{live.reference_code}.",
                code="partly_paid",
                current_status=live.status,
            )
        await _cancel_at_provider(session, providers, live, why="replaced by another payment")
        if live.status != "cancelled":  # the provider had it paid meanwhile: we follow
            raise Conflict(
                "This order is already paid.", code="already_paid", current_status=live.status
            )
    payment = Payment(
        id=new_id(),
        order_id=order.id,
        buyer_id=buyer_id,
        provider=provider_name,
        method=method,
        capture_method=provider.capture_methods[method].value,
        currency=order.currency,
        amount_fen=amount,
        captured_fen=0,
        refunded_fen=0,
        status="pending",
    )
    session.add(payment)
    await session.flush()
    try:
        created = await provider.create_payment(
            PaymentRequest(
                amount=amount,
                currency=order.currency,
                idempotency_key=f"payment-{payment.id}",
                reference=str(payment.id),
                description=f"农商桥订单 {short_ref(order.id)}",
                method_types=(method,),
                capture_method=provider.capture_methods[method],
                metadata={"order_id": str(order.id), "payment_id": str(payment.id)},
            )
        )
    except ProviderUnavailable as exc:
        raise ProviderDown(f"The payment provider cannot be reached: {exc.message}") from exc
    except ProviderError as exc:
        raise ProviderRefused(exc.message, code=exc.code) from exc
    payment.provider_payment_id = created.provider_id
    payment.client_secret = created.client_secret
    if created.instructions is not None:
        payment.reference_code = created.instructions.reference_code
    payment.synced_at = utcnow()
    await session.flush()
    return payment


async def _cancel_at_provider(
    session: AsyncSession, providers: Providers, payment: Payment, *, why: str
) -> None:
    """Void a payment that took no money (the provider first; then our record)."""
    provider = _provider(providers, payment.provider)
    if payment.provider_payment_id is not None:
        try:
            remote = await provider.cancel(
                payment.provider_payment_id, idempotency_key=f"cancel-{payment.id}"
            )
        except ProviderUnavailable as exc:
            raise ProviderDown(f"The payment provider cannot be reached: {exc.message}") from exc
        except ProviderError:
            # e.g. the buyer paid a moment ago: take the provider's word for where it is
            remote = await provider.retrieve_payment(payment.provider_payment_id)
        await sync_payment(session, payment, remote)
    if payment.status in ("pending", "requires_capture") and payment.captured_fen == 0:
        payment.status = "cancelled"
    if payment.status == "cancelled":
        payment.cancelled_at = payment.cancelled_at or utcnow()
        payment.failure_message = payment.failure_message or why
    payment.updated_at = utcnow()
    await session.flush()


def _instructions_text(payment: Payment) -> str:
    return payment.reference_code or payment.provider_payment_id or str(payment.id)


# ---------------------------------------------------------------- following the provider


async def record_receipt(
    session: AsyncSession, payment: Payment, amount: int, key: str, memo: str
) -> None:
    """Money arrived at the provider for this payment: clearing ↑, escrow ↑ (credit)."""
    clearing = await ledger.account(
        session, "provider_clearing", provider=payment.provider, currency=payment.currency
    )
    escrow = await ledger.account(session, "buyer_escrow", currency=payment.currency)
    await ledger.post(
        session,
        kind="payment_received",
        dedupe_key=key,
        memo=memo,
        legs=[Leg(clearing, amount), Leg(escrow, -amount)],
        order_id=payment.order_id,
        payment_id=payment.id,
    )


async def sync_payment(session: AsyncSession, payment: Payment, remote: ProviderPayment) -> None:
    """Bring our (locked) record forward to the provider's state, never back: money
    captured is posted once (keyed by the captured total), and the order follows."""
    if remote.amount_captured > payment.captured_fen:
        await record_receipt(
            session,
            payment,
            remote.amount_captured - payment.captured_fen,
            key=f"captured:{payment.id}:{remote.amount_captured}",
            memo=f"{payment.provider} captured {remote.amount_captured} of payment {payment.id}",
        )
        payment.captured_fen = remote.amount_captured
        payment.captured_at = payment.captured_at or utcnow()
    seen = remote.status.value
    if seen == "cancelled" and payment.captured_fen > 0:
        seen = payment.status  # money was taken: it is refunded, never "cancelled" away
    # an authorisation that had paid its order, voided or lapsed with nothing taken
    lapsed = payment.status == "requires_capture" and seen == "cancelled"
    if states.payment_moves(payment.status, seen):
        payment.status = seen
        if seen == "requires_capture":
            payment.authorised_at = utcnow()
        if seen == "cancelled":
            payment.cancelled_at = utcnow()
    if lapsed and payment.status == "cancelled":
        await orders_service.payment_lapsed(
            session,
            order_id=payment.order_id,
            reference=_instructions_text(payment),
            reason=remote.failure_message or "the card authorisation lapsed before it was captured",
            wait=LAPSED_PAYMENT_WAIT,
        )
    if (
        payment.status == "pending"
        and remote.failure_message
        and remote.failure_message != payment.failure_message
    ):
        payment.failure_message = remote.failure_message
        order = await orders_service.get_order(session, order_id=payment.order_id)
        await orders_service.tell_payment_failed(session, order, remote.failure_message)
    payment.synced_at = utcnow()
    payment.updated_at = utcnow()
    await session.flush()
    await order_follows(session, payment)


async def order_follows(session: AsyncSession, payment: Payment) -> None:
    """An authorised or captured payment pays its order. An order that expired meanwhile
    stays expired: the worker then voids the authorisation or refunds the money."""
    if payment.status not in ("requires_capture", "succeeded"):
        return
    order = await orders_service.get_order(session, order_id=payment.order_id, lock=True)
    if order.status != "pending_payment":
        return
    # too late: mark_paid expires the order instead (kept) and the worker returns the money
    with contextlib.suppress(Conflict):
        await orders_service.mark_paid(
            session, order_id=order.id, reference=_instructions_text(payment)
        )


async def refresh_payment(
    session: AsyncSession, providers: Providers, payment: Payment
) -> ProviderPayment | None:
    """Fetch the provider's copy of a (locked) payment and follow it; None when the
    provider keeps no state we can fetch (bank transfers: the statement decides)."""
    if payment.provider_payment_id is None or payment.provider == "offline":
        return None
    provider = _provider(providers, payment.provider)
    remote = await provider.retrieve_payment(payment.provider_payment_id)
    await sync_payment(session, payment, remote)
    await sync_refunds(session, provider, payment)
    return remote


# ---------------------------------------------------------------- webhooks


async def receive_webhook(
    session: AsyncSession, *, provider: PaymentProvider, payload: bytes, headers: Mapping[str, str]
) -> tuple[uuid.UUID | None, bool]:
    """Verify (raises WebhookRejected before anything is written) and store in the inbox:
    (inbox id, whether it was new). Handling happens after commit, once per event."""
    event = provider.parse_webhook(payload, headers)
    inserted = await session.scalar(
        text(
            """
            INSERT INTO webhook_event
                (provider, event_id, provider_type, kind, payment_provider_id, payload,
                 event_created_at)
            VALUES (:provider, :event_id, :provider_type, :kind, :payment_provider_id,
                    CAST(:payload AS jsonb), :created_at)
            ON CONFLICT (provider, event_id) DO NOTHING RETURNING id
            """
        ),
        {
            "provider": event.provider,
            "event_id": event.event_id,
            "provider_type": event.provider_type,
            "kind": event.kind.value,
            "payment_provider_id": event.payment_provider_id,
            "payload": _json(event.payload),
            "created_at": event.created_at,
        },
    )
    return (uuid.UUID(str(inserted)) if inserted else None), inserted is not None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


async def handle_events(session: AsyncSession, providers: Providers, *, limit: int = 50) -> int:
    """Handle stored events not yet handled, each once (SKIP LOCKED: a second worker or a
    concurrent delivery of the same event finds it taken or done). An event whose payment
    the provider cannot be asked about now stays for the next round (the ones tried most
    last, so that it holds up no event behind it). One that our own rules refuse to record
    is set aside for an operator: its outcome and the error log say why."""
    events = list(
        await session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.handled_at.is_(None))
            .order_by(WebhookEvent.attempts, WebhookEvent.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    handled = 0
    for event in events:
        event.attempts += 1
        try:
            async with session.begin_nested():
                event.outcome = await _handle_event(session, providers, event)
                event.handled_at = utcnow()
            handled += 1
        except ProviderError as exc:
            event.outcome = f"retrying: {exc.message}"
        except MarketError as exc:  # e.g. a refund made at the provider that escrow cannot cover
            # handled, not retried every round against the provider: an operator's to settle
            event.outcome = f"needs an operator: {exc.detail}"[:2000]
            event.handled_at = utcnow()
            log.error(
                "webhook event %s (%s) could not be recorded: %s",
                event.event_id,
                event.provider_type,
                exc.detail,
            )
        await session.flush()
    return handled


async def _handle_event(session: AsyncSession, providers: Providers, event: WebhookEvent) -> str:
    if event.kind == EventKind.other or event.payment_provider_id is None:
        return "ignored"
    payment = await session.scalar(
        select(Payment)
        .where(
            Payment.provider == event.provider,
            Payment.provider_payment_id == event.payment_provider_id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        return "no payment of ours"
    before = (payment.status, payment.captured_fen, payment.refunded_fen)
    await refresh_payment(session, providers, payment)
    after = (payment.status, payment.captured_fen, payment.refunded_fen)
    return "no change" if before == after else f"{before[0]} → {after[0]}"


# ---------------------------------------------------------------- refunds


async def _settled(session: AsyncSession, fulfilment_id: uuid.UUID) -> bool:
    return bool(
        await session.scalar(select(exists().where(Settlement.fulfilment_id == fulfilment_id)))
    )


async def _refund_source(
    session: AsyncSession, settled_part: uuid.UUID | None, payment: Payment
) -> uuid.UUID:
    """Where a refund's money comes from: the cooperative's payable when its part was already
    settled to it (a debt if it was paid out), else escrow."""
    if settled_part is None:
        return await ledger.account(session, "buyer_escrow", currency=payment.currency)
    fulfilment = await orders_service.get_fulfilment(session, fulfilment_id=settled_part)
    return await ledger.account(
        session,
        "cooperative_payable",
        organisation_id=fulfilment.cooperative_id,
        currency=payment.currency,
    )


async def _part_room(session: AsyncSession, order_id: uuid.UUID, fulfilment_id: uuid.UUID) -> int:
    """What one part can still get back: its goods, freight and fee share, less the refunds
    recorded for it (every kind, but those that failed)."""
    order = await orders_service.get_order(session, order_id=order_id)
    parts = await orders_service.fulfilments_of(session, [order_id])
    gross, _ = orders_service.part_amounts(order, parts)[fulfilment_id]
    given = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
            Refund.fulfilment_id == fulfilment_id, Refund.status != "failed"
        )
    )
    return gross - int(given or 0)


# Refunds that may name no part: a platform user's, and one made at the provider outside
# AgriBridge. Such a refund is of money no part is owed, or is made a part's (_unnamed_parts).
_UNNAMED_KINDS = ("manual", "provider")


def _excess_returned() -> ColumnElement[bool]:
    """Refunds that gave back money paid beyond a payment's amount: overpayment refunds, and
    the platform and provider refunds that name no part (kept to such money by
    `_unnamed_parts`), so that the overpayment refund does not give it back again."""
    return or_(
        Refund.kind == "overpayment",
        and_(Refund.fulfilment_id.is_(None), Refund.kind.in_(_UNNAMED_KINDS)),
    )


async def _excess_left(
    session: AsyncSession, payment: Payment, order: Order, parts: list[Fulfilment]
) -> int:
    """What the payment took beyond what the order's live parts are owed and has not gone
    back yet: captured, less what the live parts are owed, less every refund no live part
    carries (naming no part, or naming a declined one, whatever its kind)."""
    declined = [part.id for part in parts if part.decline_reason is not None]
    returned = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
            Refund.payment_id == payment.id,
            Refund.status != "failed",
            or_(Refund.fulfilment_id.is_(None), Refund.fulfilment_id == among(declined)),
        )
    )
    return payment.captured_fen - collectable_fen(order, parts) - int(returned or 0)


async def _unnamed_parts(
    session: AsyncSession, payment: Payment, amount: int, kind: str
) -> list[tuple[uuid.UUID | None, int]]:
    """Whose money a refund that names no part gives back, as (part, amount) pieces; None is
    nobody's. Money the payment took beyond what the order owes is nobody's, as is all of a
    dead order's or a replaced payment's. Any other refund comes out of a part, or that
    part's settlement would pay its cooperative money the buyer got back (escrow below
    zero): the order's one part; with several, a platform user names it (422 naming
    `fulfilment_id`), and a refund already made at the provider is shared among them in
    proportion to what each can still get back. A platform user's refund that is partly
    such money and partly a part's is refused (409): the two are refunded apart; one made
    at the provider is split."""
    order = await orders_service.get_order(session, order_id=payment.order_id)
    if order.status in ("cancelled", "expired") or payment.status == "cancelled":
        return [(None, amount)]
    parts = await orders_service.fulfilments_of(session, [order.id])
    excess = max(0, await _excess_left(session, payment, order, parts))
    if amount <= excess:
        return [(None, amount)]
    if excess and kind != "provider":
        raise Conflict(
            f"{notifications_service.yuan(excess)} of this payment is money the order no "
            "longer owes (a declined part, a transfer beyond the order), which the worker "
            "refunds by itself: refund at most that without naming a part, and the rest "
            "naming the part it comes out of.",
            code="refund_straddles_excess",
            excess_fen=excess,
        )
    pieces: list[tuple[uuid.UUID | None, int]] = [(None, excess)] if excess else []
    rest = amount - excess
    live = [part.id for part in parts if part.decline_reason is None]
    if len(live) == 1:
        return [*pieces, (live[0], rest)]
    if kind != "provider":
        raise Invalid.field(
            "fulfilment_id",
            f"This order is split among {len(live)} cooperatives: name the part the refund "
            f"comes out of ({', '.join(map(str, live))}).",
        )
    rooms = [max(0, await _part_room(session, order.id, part)) for part in live]
    shares = _in_proportion(rest, rooms)
    return [*pieces, *((part, share) for part, share in zip(live, shares, strict=True) if share)]


def _in_proportion(amount: int, weights: list[int]) -> list[int]:
    """`amount` shared in proportion to `weights` in whole fen (largest remainders; equal
    shares when every weight is 0)."""
    if not any(weights):
        weights = [1] * len(weights)
    total = sum(weights)
    shares = [amount * w // total for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda k: (-(amount * weights[k] % total), k))
    for k in by_remainder[: amount - sum(shares)]:
        shares[k] += 1
    return shares


async def _hold_order_money(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Refunds and settlements of one order, one at a time (until the transaction ends): each
    reads what the other wrote. Without it a refund that found the part not yet settled and
    a settlement that found no refund yet both went through, and the order's escrow went
    below zero. Taken after the payment's row lock, never before one."""
    await session.execute(_ADVISORY_LOCK, {"key": f"order money {order_id}"})


async def request_refund(
    session: AsyncSession,
    *,
    payment: Payment,
    amount: int,
    kind: str,
    reason: str,
    fulfilment_id: uuid.UUID | None = None,
    dispute_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
) -> Refund:
    """Record a refund of a locked payment and hold the money for it (escrow, or the
    cooperative's payable when its part was already settled). The provider is called by
    `execute_refunds` after commit. Never more than captured, even with concurrent requests:
    the payment row is locked and the database checks refunded ≤ captured. A platform
    user's refund that names no part is made its part's when it has to be
    (`_unnamed_parts`)."""
    await _hold_order_money(session, payment.order_id)  # then read settlements and escrow
    if fulfilment_id is None and kind == "manual":
        [(fulfilment_id, _)] = await _unnamed_parts(session, payment, amount, kind)
    room = payment.captured_fen - payment.refunded_fen
    if amount > room:
        raise Conflict(
            f"Only {notifications_service.yuan(room)} of this payment can still be refunded "
            f"({notifications_service.yuan(payment.captured_fen)} captured, "
            f"{notifications_service.yuan(payment.refunded_fen)} refunded or being refunded).",
            code="refund_exceeds_captured",
            refundable_fen=room,
        )
    from_payable = fulfilment_id is not None and await _settled(session, fulfilment_id)
    if not from_payable:
        held = await ledger.order_escrow(session, payment.order_id)
        if amount > held:
            raise Conflict(
                f"Escrow holds only {notifications_service.yuan(held)} for this order (the "
                "rest was settled to cooperatives): name the part (fulfilment_id) to refund "
                "from its cooperative's payable.",
                code="escrow_short",
                escrow_fen=held,
            )
    if fulfilment_id is not None:
        part_room = await _part_room(session, payment.order_id, fulfilment_id)
        if amount > part_room:
            raise Conflict(
                f"Only {notifications_service.yuan(part_room)} of this part can still be "
                "refunded: its goods, freight and fee share, less what its refunds (decided "
                "disputes, declines, earlier refunds) already give back.",
                code="refund_exceeds_part",
                refundable_fen=part_room,
            )
    source = await _refund_source(session, fulfilment_id if from_payable else None, payment)
    refund = Refund(
        id=new_id(),
        payment_id=payment.id,
        order_id=payment.order_id,
        fulfilment_id=fulfilment_id,
        dispute_id=dispute_id,
        kind=kind,
        amount_fen=amount,
        from_payable=from_payable,
        status="pending",
        reason=reason,
        requested_by_id=user_id,
        attempts=0,
    )
    session.add(refund)
    payment.refunded_fen += amount
    payment.updated_at = utcnow()
    await session.flush()
    refunds_payable = await ledger.account(session, "refunds_payable", currency=payment.currency)
    await ledger.post(
        session,
        kind="refund_requested",
        dedupe_key=f"refund:{refund.id}",
        memo=f"{kind} refund: {reason}",
        legs=[Leg(source, amount), Leg(refunds_payable, -amount)],
        order_id=payment.order_id,
        fulfilment_id=fulfilment_id,
        payment_id=payment.id,
        refund_id=refund.id,
    )
    return refund


async def _refund_paid(
    session: AsyncSession,
    refund: Refund,
    payment: Payment,
    remote_id: str,
    *,
    tell: bool = True,
    sent_as: str | None = None,
) -> None:
    """The provider paid the refund; the buyer is told (unless `tell` is False). A bank
    refund is paid once per sending (`sent_as`): sent again after the bank sent a transfer
    back, it is posted again."""
    refund.status = "succeeded"
    refund.provider_refund_id = remote_id
    refund.succeeded_at = utcnow()
    refund.updated_at = utcnow()
    refunds_payable = await ledger.account(session, "refunds_payable", currency=payment.currency)
    clearing = await ledger.account(
        session, "provider_clearing", provider=payment.provider, currency=payment.currency
    )
    await ledger.post(
        session,
        kind="refund_paid",
        dedupe_key=f"refund_paid:{refund.id}" + (f":{sent_as}" if sent_as else ""),
        memo=f"{payment.provider} paid refund {remote_id}",
        legs=[Leg(refunds_payable, refund.amount_fen), Leg(clearing, -refund.amount_fen)],
        order_id=refund.order_id,
        fulfilment_id=refund.fulfilment_id,
        payment_id=payment.id,
        refund_id=refund.id,
    )
    await session.flush()
    if tell:
        await _tell_refund(session, payment, "refund_paid", refund.amount_fen, refund.reason)


async def _tell_refund(
    session: AsyncSession, payment: Payment, kind: str, amount: int, reason: str
) -> None:
    """Tell the buyer of a refund of the payment: paid, or sent back by its bank."""
    await notifications_service.notify(
        session,
        organisation_id=payment.buyer_id,
        kind=kind,
        subject_type="order",
        subject_id=payment.order_id,
        context={
            "order_ref": short_ref(payment.order_id),
            "amount": notifications_service.yuan(amount),
            "reason": reason,
        },
    )


async def _refund_failed(session: AsyncSession, refund: Refund, payment: Payment, why: str) -> None:
    """The provider refused: the hold goes back where it came from (a reversing posting)."""
    refund.status = "failed"
    refund.last_error = why
    refund.updated_at = utcnow()
    payment.refunded_fen -= refund.amount_fen
    source = await _refund_source(
        session, refund.fulfilment_id if refund.from_payable else None, payment
    )
    refunds_payable = await ledger.account(session, "refunds_payable", currency=payment.currency)
    await ledger.post(
        session,
        kind="refund_reversed",
        dedupe_key=f"refund_failed:{refund.id}",
        memo=f"refund failed: {why}",
        legs=[Leg(refunds_payable, refund.amount_fen), Leg(source, -refund.amount_fen)],
        order_id=refund.order_id,
        fulfilment_id=refund.fulfilment_id,
        payment_id=payment.id,
        refund_id=refund.id,
    )
    await session.flush()


async def sync_refunds(session: AsyncSession, provider: PaymentProvider, payment: Payment) -> None:
    """Match the provider's refunds of a (locked) payment to ours by the refund id in their
    metadata; a refund made outside this system (the provider's dashboard) is recorded."""
    if payment.provider_payment_id is None or payment.provider == "offline":
        return
    remote_refunds = await provider.list_refunds(payment.provider_payment_id)
    ours = {r.id: r for r in await refunds_of(session, [payment.id])}
    known = {r.provider_refund_id for r in ours.values() if r.provider_refund_id}
    for remote in remote_refunds:
        refund_id = remote.metadata.get("refund_id")
        refund = ours.get(uuid.UUID(refund_id)) if refund_id else None
        if refund is not None:
            await _apply_refund(session, refund, payment, remote)
        elif remote.provider_id not in known and remote.status == RefundStatus.succeeded:
            room = payment.captured_fen - payment.refunded_fen
            if remote.amount > room:
                # the money is gone at the provider, but refunds owed here already claim it:
                # recording less would hide the difference, so an operator decides
                raise Conflict(
                    f"The provider refunded {remote.amount} fen of payment {payment.id} "
                    f"outside AgriBridge, but only {room} fen of it is still refundable here "
                    "(refunds already owed claim the rest): reconcile it by hand.",
                    code="refund_outside_room",
                )
            reason = "refunded at the provider, outside AgriBridge"
            await _hold_order_money(session, payment.order_id)
            for part, amount in await _unnamed_parts(session, payment, remote.amount, "provider"):
                outside = await request_refund(
                    session,
                    payment=payment,
                    amount=amount,
                    kind="provider",
                    reason=reason,
                    fulfilment_id=part,
                )
                await _refund_paid(session, outside, payment, remote.provider_id, tell=False)
            # one refund at the provider, however many parts it came out of: told once
            await _tell_refund(session, payment, "refund_paid", remote.amount, reason)


async def _apply_refund(
    session: AsyncSession, refund: Refund, payment: Payment, remote: ProviderRefund
) -> None:
    """Follow the provider's copy of a refund. Its id is kept whatever the status: a refund
    the provider holds as pending (a Stripe balance too low to pay it, say) is then left to
    the webhook and the reconciliation, not asked for again every round, which after the
    provider forgets the idempotency key (24 hours at Stripe) would have refunded twice."""
    refund.provider_refund_id = refund.provider_refund_id or remote.provider_id
    if not states.refund_moves(refund.status, remote.status.value):
        return
    if remote.status == RefundStatus.succeeded:
        await _refund_paid(session, refund, payment, remote.provider_id)
    elif remote.status == RefundStatus.failed:
        await _refund_failed(session, refund, payment, remote.failure_message or "refused")


async def execute_refunds(session: AsyncSession, providers: Providers, *, limit: int = 20) -> int:
    """Carry out pending refunds at the provider, each with the idempotency key of its id.
    Before (re)trying, the provider's refunds are searched for this one, so a refund whose
    response was lost (a crash after the call) is found instead of made twice."""
    refunds = list(
        await session.scalars(
            select(Refund)
            .where(Refund.status == "pending", Refund.provider_refund_id.is_(None))
            .order_by(Refund.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    done = 0
    for refund in refunds:
        payment = await get_payment(session, payment_id=refund.payment_id, lock=True)
        provider = _provider(providers, payment.provider)
        refund.attempts += 1
        try:
            async with session.begin_nested():
                await sync_refunds(session, provider, payment)
                if refund.status != "pending" or refund.provider_refund_id is not None:
                    done += 1
                    continue
                remote = await provider.refund(
                    payment.provider_payment_id or "",
                    amount=refund.amount_fen,
                    idempotency_key=f"refund-{refund.id}",
                    metadata={"refund_id": str(refund.id), "order_id": str(refund.order_id)},
                )
                await _apply_refund(session, refund, payment, remote)
                done += 1
        except ProviderUnavailable as exc:
            refund.last_error = exc.message
        except ProviderError as exc:
            await _refund_failed(session, refund, payment, exc.message)
        except MarketError as exc:  # the provider's refunds disagree with ours: an operator's
            if refund.last_error != exc.detail[:500]:  # said once, not every round
                log.error("refund %s waits for an operator: %s", refund.id, exc.detail)
            refund.last_error = exc.detail[:500]
        refund.updated_at = utcnow()
        await session.flush()
    return done


# ---------------------------------------------------------------- bank refunds


@dataclass(frozen=True)
class BankRefund:
    """A refund of a bank-transfer payment for the platform's bank to send, and where to: the
    account of the payment's latest statement line (empty when none is known)."""

    refund: Refund
    payer_name: str
    payer_account: str
    payer_bank: str


_BANK_REFUNDS = (
    select(Refund)
    .join(Payment, Payment.id == Refund.payment_id)
    .where(
        Payment.provider == "offline",
        Refund.status == "pending",
        Refund.provider_refund_id.is_not(None),  # accepted: the bank is to send it
    )
)


async def bank_refunds(
    session: AsyncSession, *, page: PageParams
) -> tuple[list[BankRefund], str | None]:
    """Bank refunds waiting to be sent, oldest first page by page, with their payers."""
    refunds, cursor = await paginate(session, _BANK_REFUNDS, page, [Refund.created_at, Refund.id])
    return await _with_payers(session, refunds), cursor


async def export_bank_refunds(session: AsyncSession) -> tuple[list[BankRefund], int]:
    """The bank refunds for a new batch-transfer file: those waiting to be sent, never
    exported before, whose payer's account and bank are known; each stamped exported, so
    that no later file holds it again (a second upload would pay it twice). Exports are
    serialised by an advisory lock. Returns them and how many others wait without a known
    account (to be sent by hand)."""
    await session.execute(_ADVISORY_LOCK, {"key": "bank refund export"})
    waiting = list(
        await session.scalars(
            _BANK_REFUNDS.where(Refund.exported_at.is_(None))
            .order_by(Refund.created_at, Refund.id)
            .with_for_update(of=Refund)
        )
    )
    items = await _with_payers(session, waiting)
    ready = [i for i in items if i.payer_name and i.payer_account and i.payer_bank]
    now = utcnow()
    for item in ready:
        item.refund.exported_at = now
    await session.flush()
    return ready, len(items) - len(ready)


async def _with_payers(session: AsyncSession, refunds: list[Refund]) -> list[BankRefund]:
    latest = (
        select(
            StatementLine.payment_id,
            StatementLine.payer_name,
            StatementLine.payer_account,
            StatementLine.payer_bank,
        )
        .where(StatementLine.payment_id == among({r.payment_id for r in refunds}))
        .order_by(StatementLine.payment_id, StatementLine.booked_on.desc(), StatementLine.id.desc())
        .ext(distinct_on(StatementLine.payment_id))
    )
    payers = {row[0]: row[1:] for row in await session.execute(latest)} if refunds else {}
    out = []
    for r in refunds:
        if r.payee_account is not None:  # given by a platform user after a bounce
            out.append(BankRefund(r, r.payee_name or "", r.payee_account, r.payee_bank or ""))
        else:
            out.append(BankRefund(r, *payers.get(r.payment_id, ("", "", ""))))
    return out


async def _locked_bank_refund(
    session: AsyncSession, refund_id: uuid.UUID
) -> tuple[Refund, Payment]:
    """A bank refund and its payment, locked: the refund's row first, then its payment's, the
    order in which the worker takes them. 404 unknown; 409 for a provider's refund."""
    refund = await session.get(Refund, refund_id, with_for_update=True, populate_existing=True)
    if refund is None:
        raise NotFound("No such refund.")
    payment = await get_payment(session, payment_id=refund.payment_id, lock=True)
    if payment.provider != "offline":
        raise Conflict(
            f"This refund goes through {payment.provider}, which sends it itself.",
            code="not_a_bank_refund",
        )
    return refund, payment


async def mark_bank_refund_sent(
    session: AsyncSession, *, refund_id: uuid.UUID, user_id: uuid.UUID | None, bank_reference: str
) -> Refund:
    """Record that the platform's bank sent a bank refund: the money leaves the ledger's
    `refunds_payable` and the buyer is told. 409 naming the status for a refund that is not
    a bank refund waiting to be sent (already sent, or not accepted yet)."""
    refund, payment = await _locked_bank_refund(session, refund_id)
    if refund.status != "pending" or refund.provider_refund_id is None:
        state = refund.status if refund.status != "pending" else "not yet accepted"
        raise Conflict(
            f"This refund cannot be recorded as sent: it is {state}.",
            code="invalid_transition",
            current_status=refund.status,
        )
    refund.sent_by_id = user_id
    refund.bank_reference = bank_reference
    sending = await _postings_of(session, refund, "refund_paid") + 1
    await _refund_paid(
        session, refund, payment, refund.provider_refund_id, sent_as=f"sending {sending}"
    )
    return refund


async def _postings_of(session: AsyncSession, refund: Refund, kind: str) -> int:
    """How many postings of `kind` a (locked) refund has: a bank refund is sent, and sent back,
    as often as the bank needs, each time posted once (keys by count, not by the bank's
    reference, which a bank may use again)."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.refund_id == refund.id, LedgerTransaction.kind == kind)
        )
        or 0
    )


async def bank_refund_bounced(
    session: AsyncSession,
    *,
    refund_id: uuid.UUID,
    reason: str,
    payee: tuple[str, str, str] | None,
    user_id: uuid.UUID | None,
) -> Refund:
    """The payer's bank sent a bank refund's transfer back (a closed account, a wrong name):
    the money is in the platform's account again, so the refund waits to be sent once more
    (pending, in the next export), to `payee` (name, account, bank) when given, and the buyer
    is told. Who recorded it, and the transfer that came back, stay in the posting's memo.
    409 for a refund that was not recorded sent."""
    refund, payment = await _locked_bank_refund(session, refund_id)
    if refund.status != "succeeded" or refund.bank_reference is None:
        raise Conflict(
            f"Only a refund recorded sent can come back; this one is {refund.status}.",
            code="invalid_transition",
            current_status=refund.status,
        )
    refunds_payable = await ledger.account(session, "refunds_payable", currency=payment.currency)
    clearing = await ledger.account(
        session, "provider_clearing", provider=payment.provider, currency=payment.currency
    )
    bounce = await _postings_of(session, refund, "refund_bounced") + 1
    await ledger.post(
        session,
        kind="refund_bounced",
        dedupe_key=f"refund_bounced:{refund.id}:{bounce}",
        memo=f"bank refund {refund.bank_reference} sent back: {reason} (recorded by {user_id})",
        legs=[Leg(clearing, refund.amount_fen), Leg(refunds_payable, -refund.amount_fen)],
        order_id=refund.order_id,
        fulfilment_id=refund.fulfilment_id,
        payment_id=payment.id,
        refund_id=refund.id,
    )
    refund.status = "pending"
    refund.succeeded_at = None
    refund.exported_at = None
    refund.bank_reference = None
    refund.sent_by_id = None
    refund.last_error = f"sent back by the bank: {reason}"
    if payee is not None:
        refund.payee_name, refund.payee_account, refund.payee_bank = payee
    refund.updated_at = utcnow()
    await session.flush()
    await _tell_refund(session, payment, "refund_bounced", refund.amount_fen, reason)
    return refund


# ---------------------------------------------------------------- derived obligations


async def _live_payment(session: AsyncSession, order_id: uuid.UUID) -> Payment | None:
    return await session.scalar(
        select(Payment)
        .where(Payment.order_id == order_id, Payment.captured_fen > 0)
        .order_by(Payment.created_at.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def derive_refunds(session: AsyncSession, *, limit: int = 50) -> int:
    """Refunds that orders' state makes due and that are not recorded yet: decided disputes,
    cancelled or expired orders that still hold money, parts declined after the money was
    taken, and transfers above the amount due. Each is recorded once (unique indexes)."""
    created = 0
    disputes = list(
        await session.execute(
            select(Dispute.id, Dispute.order_id, Dispute.fulfilment_id, Dispute.refund_fen)
            .where(
                Dispute.status == "decided",
                Dispute.refund_fen > 0,
                ~exists().where(Refund.dispute_id == Dispute.id),
            )
            .order_by(Dispute.decided_at.desc())  # one left with nothing to give never blocks
            .limit(limit)
        )
    )
    for dispute_id, order_id, fulfilment_id, refund_fen in disputes:
        payment = await _live_payment(session, order_id)
        if payment is None:
            continue
        # never more than the part can still get back (a platform refund naming it may
        # have given some already): the rest of the decision was paid that way
        amount = min(
            int(refund_fen or 0),
            payment.captured_fen - payment.refunded_fen,
            await _part_room(session, order_id, fulfilment_id),
        )
        if amount > 0 and await _try_refund(
            session,
            payment=payment,
            amount=amount,
            kind="dispute",
            reason="dispute decided by the platform",
            fulfilment_id=fulfilment_id,
            dispute_id=dispute_id,
        ):
            created += 1

    # money still held for an order that will never be delivered (once: a refund the
    # provider refused is left to a platform user, not retried every round)
    refused_before = exists().where(
        Refund.payment_id == Payment.id,
        Refund.kind.in_(("cancellation", "late_payment")),
        Refund.status == "failed",
    )
    dead = list(
        await session.execute(
            select(Payment.id, Order.status)
            .join(Order, Order.id == Payment.order_id)
            .where(
                Order.status.in_(("cancelled", "expired")),
                Payment.captured_fen > Payment.refunded_fen,
                ~refused_before,
            )
            .limit(limit)
        )
    )
    for payment_id, order_status in dead:
        payment = await get_payment(session, payment_id=payment_id, lock=True)
        amount = payment.captured_fen - payment.refunded_fen  # under the lock: never twice
        kind = "cancellation" if order_status == "cancelled" else "late_payment"
        if amount > 0 and await _try_refund(
            session, payment=payment, amount=amount, kind=kind, reason=f"order {order_status}"
        ):
            created += 1

    # money taken by a payment the buyer had replaced by another: cancelled here while the
    # provider was still processing it, it went through all the same (once: a refund the
    # provider refused is left to a platform user)
    replaced = list(
        await session.scalars(
            select(Payment.id)
            .where(
                Payment.status == "cancelled",
                Payment.captured_fen > Payment.refunded_fen,
                ~exists().where(
                    Refund.payment_id == Payment.id,
                    Refund.kind == "replaced_payment",
                    Refund.status == "failed",
                ),
            )
            .limit(limit)
        )
    )
    for payment_id in replaced:
        payment = await get_payment(session, payment_id=payment_id, lock=True)
        amount = payment.captured_fen - payment.refunded_fen  # under the lock: never twice
        if amount > 0 and await _try_refund(
            session,
            payment=payment,
            amount=amount,
            kind="replaced_payment",
            reason="paid through a payment that had been replaced by another",
        ):
            created += 1

    # a part declined while the money for the whole order was asked for: taken before the
    # decline, or after it by a transfer of the amount asked before (a card authorisation is
    # captured without the part, so nothing of it is taken). The prefilter leaves out the
    # payments that took no more than the order less its declined parts' goods and freight.
    other = aliased(Fulfilment)
    declined_charges = (
        select(func.coalesce(func.sum(other.goods_fen + other.logistics_fen), 0))
        .where(other.order_id == Fulfilment.order_id, other.decline_reason.is_not(None))
        .scalar_subquery()
    )
    declined = list(
        await session.execute(
            select(Fulfilment.id, Fulfilment.order_id)
            .join(Payment, Payment.order_id == Fulfilment.order_id)
            .join(Order, Order.id == Fulfilment.order_id)
            .where(
                Fulfilment.decline_reason.is_not(None),
                Payment.status != "cancelled",
                Payment.created_at < Fulfilment.cancelled_at,
                Payment.captured_fen > Payment.refunded_fen,
                Payment.captured_fen > Order.total_fen - declined_charges,
                ~exists().where(
                    and_(Refund.fulfilment_id == Fulfilment.id, Refund.kind == "declined_part")
                ),
            )
            .limit(limit)
        )
    )
    for fulfilment_id, order_id in declined:
        payment = await _live_payment(session, order_id)
        if payment is None:
            continue
        order = await orders_service.get_order(session, order_id=order_id)
        parts = await orders_service.fulfilments_of(session, [order_id])
        gross, _ = orders_service.part_amounts(order, parts)[fulfilment_id]
        # what the part already got back (a dispute decided before it was declined) is not
        # refunded twice
        already = await session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                Refund.fulfilment_id == fulfilment_id, Refund.status != "failed"
            )
        )
        # and never more than the payment took beyond what the order owes now and has not
        # gone back yet (for other declined parts, transfers of too much, unnamed refunds)
        excess = await _excess_left(session, payment, order, parts)
        amount = min(gross - int(already or 0), payment.captured_fen - payment.refunded_fen, excess)
        if amount > 0 and await _try_refund(
            session,
            payment=payment,
            amount=amount,
            kind="declined_part",
            reason="the cooperative could not supply its part",
            fulfilment_id=fulfilment_id,
        ):
            created += 1

    # bank transfers of more than was due (a second transfer adds to the excess)
    returned = (
        select(func.coalesce(func.sum(Refund.amount_fen), 0))
        .where(
            Refund.payment_id == Payment.id,
            _excess_returned(),
            Refund.status != "failed",
        )
        .scalar_subquery()
    )
    over = list(
        await session.scalars(
            select(Payment.id)
            .where(
                Payment.status == "succeeded",
                Payment.captured_fen > Payment.amount_fen + returned,
                ~exists().where(
                    Refund.payment_id == Payment.id,
                    Refund.kind == "overpayment",
                    Refund.status == "failed",
                ),
            )
            .limit(limit)
        )
    )
    for payment_id in over:
        payment = await get_payment(session, payment_id=payment_id, lock=True)
        already = int(
            await session.scalar(
                select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                    Refund.payment_id == payment.id,
                    _excess_returned(),
                    Refund.status != "failed",
                )
            )
            or 0
        )
        amount = min(
            payment.captured_fen - payment.amount_fen - already,
            payment.captured_fen - payment.refunded_fen,
        )
        if amount > 0 and await _try_refund(
            session, payment=payment, amount=amount, kind="overpayment", reason="paid more than due"
        ):
            created += 1
    return created


async def _try_refund(session: AsyncSession, **kwargs: Any) -> bool:
    """request_refund in a savepoint: a refund another worker recorded first, or one that no
    longer fits, is skipped (logged), not fatal to the batch."""
    try:
        async with session.begin_nested():
            await request_refund(session, **kwargs)
        return True
    except Conflict as exc:
        log.warning("refund not recorded: %s", exc.detail)
    except Exception as exc:  # unique index: recorded by another worker meanwhile
        if "uq_refund" not in str(exc):
            raise
    return False


async def capture_due(
    session: AsyncSession, providers: Providers, *, capture_within: dt.timedelta, limit: int = 20
) -> int:
    """Capture authorised card payments once something of the order has shipped (or before
    the authorisation lapses): the amount is what is still collectable, i.e. without the
    parts cooperatives declined — a partial capture when some did."""
    shipped = exists().where(
        Fulfilment.order_id == Payment.order_id,
        Fulfilment.status.in_(("shipped", "delivered")),
    )
    payments = list(
        await session.scalars(
            select(Payment)
            .where(
                Payment.status == "requires_capture",
                or_(shipped, Payment.authorised_at < utcnow() - capture_within),
            )
            .order_by(Payment.authorised_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    captured = 0
    for payment in payments:
        try:
            async with session.begin_nested():
                await _capture(session, providers, payment)
                captured += 1
        except ProviderError as exc:
            log.warning("capture of payment %s failed: %s", payment.id, exc.message)
    return captured


async def _capture(session: AsyncSession, providers: Providers, payment: Payment) -> None:
    provider = _provider(providers, payment.provider)
    assert payment.provider_payment_id is not None
    remote = await provider.retrieve_payment(payment.provider_payment_id)
    if remote.status != PaymentStatus.requires_capture:  # captured before a crash, or voided
        await sync_payment(session, payment, remote)
        return
    order = await orders_service.get_order(session, order_id=payment.order_id)
    amount = collectable_fen(order, await orders_service.fulfilments_of(session, [order.id]))
    if amount <= 0:
        remote = await provider.cancel(
            payment.provider_payment_id, idempotency_key=f"cancel-{payment.id}"
        )
    else:
        remote = await provider.capture(
            payment.provider_payment_id,
            amount=min(amount, remote.amount_capturable or amount),
            idempotency_key=f"capture-{payment.id}",
        )
    await sync_payment(session, payment, remote)


async def void_dead(session: AsyncSession, providers: Providers, *, limit: int = 20) -> int:
    """Cancel payments that took no money for orders that expired or were cancelled, so that
    an authorisation is released and a late transfer page cannot be paid."""
    payments = list(
        await session.scalars(
            select(Payment)
            .join(Order, Order.id == Payment.order_id)
            .where(
                Payment.status.in_(("pending", "requires_capture")),
                Payment.captured_fen == 0,
                Order.status.in_(("cancelled", "expired")),
            )
            .limit(limit)
            .with_for_update(of=Payment, skip_locked=True)
        )
    )
    for payment in payments:
        try:
            async with session.begin_nested():
                await _cancel_at_provider(session, providers, payment, why="order closed")
        except MarketError as exc:
            log.warning("void of payment %s failed: %s", payment.id, exc.detail)
    return len(payments)


async def reconcile_stale(
    session: AsyncSession, providers: Providers, *, older_than: dt.timedelta, limit: int = 50
) -> int:
    """Fetch payments the provider should have told us about by now (lost webhooks, a crash
    between a provider call and our commit) and repair them; refunds likewise."""
    cutoff = utcnow() - older_than
    payments = list(
        await session.scalars(
            select(Payment)
            .where(
                Payment.provider != "offline",
                Payment.provider_payment_id.is_not(None),
                or_(
                    Payment.status.in_(("pending", "requires_capture")),
                    exists().where(
                        and_(Refund.payment_id == Payment.id, Refund.status == "pending")
                    ),
                ),
                func.coalesce(Payment.synced_at, Payment.created_at) < cutoff,
            )
            .order_by(Payment.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    repaired = 0
    for payment in payments:
        before = (payment.status, payment.captured_fen, payment.refunded_fen)
        try:
            async with session.begin_nested():
                await refresh_payment(session, providers, payment)
        except ProviderError as exc:
            log.warning("reconciliation of payment %s failed: %s", payment.id, exc.message)
            continue
        except MarketError as exc:  # our rules refuse what the provider did: for an operator
            log.error("reconciliation of payment %s needs an operator: %s", payment.id, exc.detail)
            payment.synced_at = utcnow()  # tried again after the interval, not every round
            continue
        if (payment.status, payment.captured_fen, payment.refunded_fen) != before:
            repaired += 1
            log.info("reconciled payment %s: %s → %s", payment.id, before[0], payment.status)
    return repaired


# ---------------------------------------------------------------- settlement


async def settle_due(session: AsyncSession, *, hold: dt.timedelta, limit: int = 50) -> int:
    """Move each delivered part's money from escrow to its cooperative, less the platform
    fee, once the hold after delivery has passed and no dispute about it is open."""
    open_dispute = exists().where(
        Dispute.fulfilment_id == Fulfilment.id, Dispute.status != "decided"
    )
    # and a refund of the part still on its way from escrow waits to succeed or fail: settled
    # less it, a failure would strand its money in escrow (nobody's), the cooperative short
    # (a bank refund the platform's bank is to send cannot fail here: no need to wait)
    bank = aliased(Payment)
    refund_under_way = exists().where(
        Refund.fulfilment_id == Fulfilment.id,
        Refund.status == "pending",
        Refund.from_payable.is_(False),
        ~exists().where(
            bank.id == Refund.payment_id,
            bank.provider == "offline",
            Refund.provider_refund_id.is_not(None),
        ),
    )
    due = list(
        await session.scalars(
            select(Fulfilment)
            .join(Payment, Payment.order_id == Fulfilment.order_id)
            .where(
                Fulfilment.status == "delivered",
                Fulfilment.delivered_at <= utcnow() - hold,
                Payment.status == "succeeded",
                ~open_dispute,
                ~refund_under_way,
                ~exists().where(Settlement.fulfilment_id == Fulfilment.id),
            )
            .order_by(Fulfilment.delivered_at)
            .limit(limit)
            .with_for_update(of=Fulfilment, skip_locked=True)
        )
    )
    for fulfilment in due:
        await _settle(session, fulfilment)
    return len(due)


async def _settle(session: AsyncSession, fulfilment: Fulfilment) -> None:
    await _hold_order_money(session, fulfilment.order_id)  # then read its refunds
    order = await orders_service.get_order(session, order_id=fulfilment.order_id)
    parts = await orders_service.fulfilments_of(session, [order.id])
    gross, fee = orders_service.part_amounts(order, parts)[fulfilment.id]
    refunded_before = int(
        await session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                Refund.fulfilment_id == fulfilment.id,
                Refund.status != "failed",
                Refund.from_payable.is_(False),
            )
        )
        or 0
    )
    refunded_before = min(refunded_before, gross - fee)
    net = gross - fee - refunded_before
    settlement = Settlement(
        fulfilment_id=fulfilment.id,
        order_id=order.id,
        cooperative_id=fulfilment.cooperative_id,
        gross_fen=gross,
        fee_fen=fee,
        refunded_before_fen=refunded_before,
        net_fen=net,
    )
    session.add(settlement)
    await session.flush()
    escrow = await ledger.account(session, "buyer_escrow", currency=order.currency)
    payable = await ledger.account(
        session,
        "cooperative_payable",
        organisation_id=fulfilment.cooperative_id,
        currency=order.currency,
    )
    revenue = await ledger.account(session, "platform_fee_revenue", currency=order.currency)
    await ledger.post(
        session,
        kind="settlement",
        dedupe_key=f"settle:{fulfilment.id}",
        memo=f"settled part of order {order.id}",
        legs=[Leg(escrow, net + fee), Leg(payable, -net), Leg(revenue, -fee)],
        order_id=order.id,
        fulfilment_id=fulfilment.id,
    )
    await notifications_service.notify(
        session,
        organisation_id=fulfilment.cooperative_id,
        kind="settled",
        subject_type="fulfilment",
        subject_id=fulfilment.id,
        context={
            "order_ref": short_ref(order.id),
            "gross": notifications_service.yuan(gross - refunded_before),
            "fee": notifications_service.yuan(fee),
            "net": notifications_service.yuan(net),
        },
    )


async def list_settlements(
    session: AsyncSession, *, cooperative_id: uuid.UUID, page: PageParams
) -> tuple[list[Settlement], str | None]:
    stmt = select(Settlement).where(Settlement.cooperative_id == cooperative_id)
    return await paginate(
        session, stmt, page, [Settlement.settled_at, Settlement.id], descending=True
    )


async def cooperative_summary(
    session: AsyncSession, *, cooperative_id: uuid.UUID
) -> dict[str, int]:
    """Payable balance (negative: a debt the next payout nets off), what is delivered but
    not yet settled, and what has been paid out."""
    balance = (await ledger.payable_balances(session, [cooperative_id])).get(cooperative_id, 0)
    awaiting = int(
        await session.scalar(
            select(
                func.coalesce(func.sum(Fulfilment.goods_fen + Fulfilment.logistics_fen), 0)
            ).where(
                Fulfilment.cooperative_id == cooperative_id,
                Fulfilment.status.in_(("shipped", "delivered")),
                ~exists().where(Settlement.fulfilment_id == Fulfilment.id),
            )
        )
        or 0
    )
    paid_out = int(
        await session.scalar(
            select(func.coalesce(func.sum(Payout.amount_fen), 0))
            .join(PayoutBatch, PayoutBatch.id == Payout.batch_id)
            .where(Payout.cooperative_id == cooperative_id, PayoutBatch.status == "paid")
        )
        or 0
    )
    in_transit = int(
        await session.scalar(
            select(func.coalesce(func.sum(Payout.amount_fen), 0))
            .join(PayoutBatch, PayoutBatch.id == Payout.batch_id)
            .where(Payout.cooperative_id == cooperative_id, PayoutBatch.status == "scheduled")
        )
        or 0
    )
    return {
        "payable_fen": balance,
        "awaiting_settlement_fen": awaiting,
        "payout_scheduled_fen": in_transit,
        "paid_out_fen": paid_out,
    }


# ---------------------------------------------------------------- payouts


async def set_payout_account(
    session: AsyncSession, *, cooperative_id: uuid.UUID, data: dict[str, str]
) -> PayoutAccount:
    account = await session.get(PayoutAccount, cooperative_id)
    if account is None:
        account = PayoutAccount(organisation_id=cooperative_id, **data)
        session.add(account)
    else:
        for key, value in data.items():
            setattr(account, key, value)
        account.updated_at = utcnow()
    await session.flush()
    return account


async def get_payout_account(session: AsyncSession, *, cooperative_id: uuid.UUID) -> PayoutAccount:
    account = await session.get(PayoutAccount, cooperative_id)
    if account is None:
        raise NotFound("No payout account yet: set one with PUT …/payout-account.")
    return account


async def build_payout_batch(
    session: AsyncSession, *, user_id: uuid.UUID | None, currency: str = "CNY"
) -> tuple[PayoutBatch, list[uuid.UUID]]:
    """One payout per cooperative owed money (its payable balance, which nets off debts from
    refunds after settlement) that has a payout account. Builders are serialised by an
    advisory lock, so two at once make one batch; the second finds nothing due (409).
    Returns the batch and the cooperatives skipped for want of an account."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('agribridge.payout_batch'))"))
    balances = await ledger.payable_balances(session)
    owed = {org: amount for org, amount in balances.items() if amount > 0}
    accounts = {
        a.organisation_id: a
        for a in await session.scalars(
            select(PayoutAccount).where(PayoutAccount.organisation_id.in_(list(owed)))
        )
    }
    missing = sorted((org for org in owed if org not in accounts), key=str)
    payable_now = {org: amount for org, amount in owed.items() if org in accounts}
    if not payable_now:
        raise Conflict(
            "Nothing is due for payout"
            + (
                f" ({len(missing)} cooperatives are owed money but have no payout account)."
                if missing
                else "."
            ),
            code="nothing_due",
        )
    batch = PayoutBatch(
        id=new_id(),
        status="scheduled",
        currency=currency,
        total_fen=sum(payable_now.values()),
        payout_count=len(payable_now),
        created_by_id=user_id,
    )
    session.add(batch)
    await session.flush()
    in_transit = await ledger.account(session, "payouts_in_transit", currency=currency)
    names = await organisations_service.names_of(session, payable_now)
    for org, amount in sorted(payable_now.items(), key=lambda item: str(item[0])):
        account = accounts[org]
        payout = Payout(
            id=new_id(),
            batch_id=batch.id,
            cooperative_id=org,
            amount_fen=amount,
            account_name=account.account_name,
            account_number=account.account_number,
            bank_name=account.bank_name,
        )
        session.add(payout)
        await session.flush()
        payable = await ledger.account(
            session, "cooperative_payable", organisation_id=org, currency=currency
        )
        await ledger.post(
            session,
            kind="payout_scheduled",
            dedupe_key=f"payout:{payout.id}",
            memo=f"payout to {names.get(org, org)} in batch {batch.id}",
            legs=[Leg(payable, amount), Leg(in_transit, -amount)],
            payout_id=payout.id,
        )
        await notifications_service.notify(
            session,
            organisation_id=org,
            kind="payout_scheduled",
            subject_type="payout",
            subject_id=payout.id,
            context={
                "account": f"{account.bank_name} {account.account_name}",
                "amount": notifications_service.yuan(amount),
                "batch_ref": short_ref(batch.id),
            },
        )
    return batch, missing


async def get_batch(
    session: AsyncSession, *, batch_id: uuid.UUID, lock: bool = False
) -> PayoutBatch:
    stmt = select(PayoutBatch).where(PayoutBatch.id == batch_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    batch = await session.scalar(stmt)
    if batch is None:
        raise NotFound("No such payout batch.")
    return batch


async def payouts_of(session: AsyncSession, batch_id: uuid.UUID) -> list[Payout]:
    return list(
        await session.scalars(
            select(Payout).where(Payout.batch_id == batch_id).order_by(Payout.cooperative_id)
        )
    )


async def list_payouts(
    session: AsyncSession, *, cooperative_id: uuid.UUID, page: PageParams
) -> tuple[list[Payout], str | None]:
    stmt = select(Payout).where(Payout.cooperative_id == cooperative_id)
    return await paginate(session, stmt, page, [Payout.created_at, Payout.id], descending=True)


async def batches_by_id(
    session: AsyncSession, batch_ids: list[uuid.UUID]
) -> dict[uuid.UUID, PayoutBatch]:
    if not batch_ids:
        return {}
    return {
        b.id: b
        for b in await session.scalars(select(PayoutBatch).where(PayoutBatch.id.in_(batch_ids)))
    }


async def mark_batch_paid(
    session: AsyncSession, *, batch_id: uuid.UUID, user_id: uuid.UUID | None
) -> PayoutBatch:
    """The bank executed the payout file: in-transit → out of the bank account."""
    batch = await get_batch(session, batch_id=batch_id, lock=True)
    batch.status = states.batch_transition(batch.status, "paid")
    batch.paid_at = utcnow()
    batch.paid_by_id = user_id
    in_transit = await ledger.account(session, "payouts_in_transit", currency=batch.currency)
    bank = await ledger.account(
        session, "provider_clearing", provider="offline", currency=batch.currency
    )
    for payout in await payouts_of(session, batch.id):
        await ledger.post(
            session,
            kind="payout_paid",
            dedupe_key=f"payout_paid:{payout.id}",
            memo=f"bank paid payout {payout.id}",
            legs=[Leg(in_transit, payout.amount_fen), Leg(bank, -payout.amount_fen)],
            payout_id=payout.id,
        )
    await session.flush()
    return batch
