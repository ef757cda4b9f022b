"""HTTP: buyers pay and see their payments; cooperatives see their balance, settlements and
payouts; platform users import statements, work the review queue, refund and pay out; the
Stripe webhook."""

from __future__ import annotations

import io
import logging
import tempfile
import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, status
from fastapi.responses import Response

from market.config import Settings
from market.db import short_ref
from market.deps import (
    CurrentUserId,
    PaymentsDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    idempotent,
)
from market.errors import Invalid, MarketError, NotFound
from market.idempotency.service import Claim
from market.money import ledger, service, statements
from market.money.models import Payment, Payout, PayoutBatch
from market.money.schemas import (
    BalanceRead,
    BankRefundBounced,
    BankRefundPage,
    BankRefundRead,
    BankRefundSent,
    LedgerAccountBalance,
    PaymentCreate,
    PaymentPage,
    PaymentRead,
    PayoutAccountRead,
    PayoutAccountWrite,
    PayoutBatchRead,
    PayoutPage,
    PayoutRead,
    RefundCreate,
    RefundRead,
    SettlementPage,
    SettlementRead,
    StatementImportRead,
    StatementLinePage,
    StatementLineRead,
    StatementLineResolve,
    TransferInstructionsRead,
    TrialBalance,
    WebhookAck,
)
from market.orders import service as orders_service
from market.organisations import service as organisations_service
from market.pagination import PageDep
from market.routing import MarketRoute
from payments.base import WebhookRejected
from payments.offline import PayoutRow, write_payout_file

log = logging.getLogger("market.money")
router = APIRouter(route_class=MarketRoute, tags=["payments"])
MoneyMoving = Annotated[Claim | None, Depends(idempotent(required=True))]


async def _payment_reads(
    session: SessionDep, settings: Settings, payments: list[Payment]
) -> list[PaymentRead]:
    refunds = await service.refunds_of(session, [p.id for p in payments])
    out = []
    for p in payments:
        instructions = None
        if p.reference_code is not None and p.status == "pending":
            instructions = TransferInstructionsRead(
                account_name=settings.bank_account_name,
                account_number=settings.bank_account_number,
                bank_name=settings.bank_name,
                reference_code=p.reference_code,
                amount_fen=p.amount_fen - p.captured_fen,
                currency=p.currency,
            )
        out.append(
            PaymentRead(
                id=p.id,
                order_id=p.order_id,
                method=p.method,
                provider=p.provider,
                status=p.status,
                capture_method=p.capture_method,
                currency=p.currency,
                amount_fen=p.amount_fen,
                captured_fen=p.captured_fen,
                refunded_fen=p.refunded_fen,
                client_secret=p.client_secret if p.status == "pending" else None,
                transfer_instructions=instructions,
                failure_message=p.failure_message,
                created_at=p.created_at,
                authorised_at=p.authorised_at,
                captured_at=p.captured_at,
                cancelled_at=p.cancelled_at,
                refunds=[RefundRead.model_validate(r) for r in refunds if r.payment_id == p.id],
            )
        )
    return out


# ---------------------------------------------------------------- buyers


@router.post(
    "/organisations/{organisation_id}/orders/{order_id}/payments",
    status_code=status.HTTP_201_CREATED,
    summary="Pay an order",
    description="Opens a payment of what the order still owes. `bank_transfer` answers with "
    "the account and a reference code to quote; the order is paid when the transfer appears "
    "on an imported bank statement. `card`, `alipay` and `wechat_pay` (when Stripe is "
    "configured) answer with a `client_secret` for the front end; cards are authorised now "
    "and captured when the cooperative ships. Choosing another method cancels the pending "
    "payment. Needs an `Idempotency-Key`.",
)
async def pay_order(
    organisation_id: uuid.UUID,
    order_id: uuid.UUID,
    body: PaymentCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    providers: PaymentsDep,
    _: MoneyMoving,
) -> PaymentRead:
    await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    payment = await service.start_payment(
        session,
        providers=providers,
        order_id=order_id,
        buyer_id=organisation_id,
        method=body.method,
    )
    await session.refresh(payment)
    return (await _payment_reads(session, settings, [payment]))[0]


@router.get(
    "/organisations/{organisation_id}/orders/{order_id}/payments",
    summary="The payments of an order, with their refunds",
)
async def order_payments(
    organisation_id: uuid.UUID,
    order_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> list[PaymentRead]:
    await organisations_service.buyer_access(session, principal, organisation_id, domain="orders")
    order = await orders_service.get_order(session, order_id=order_id, buyer_id=organisation_id)
    return await _payment_reads(
        session, settings, await service.payments_of_order(session, order.id)
    )


@router.get(
    "/organisations/{organisation_id}/payments", summary="The buyer's payments, newest first"
)
async def list_payments(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    page: PageDep,
) -> PaymentPage:
    await organisations_service.buyer_access(session, principal, organisation_id, domain="orders")
    payments, cursor = await service.list_payments(session, buyer_id=organisation_id, page=page)
    return PaymentPage(items=await _payment_reads(session, settings, payments), next_cursor=cursor)


# ---------------------------------------------------------------- cooperatives


@router.get(
    "/organisations/{organisation_id}/balance",
    summary="What the platform owes the cooperative",
)
async def balance(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> BalanceRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    summary = await service.cooperative_summary(session, cooperative_id=organisation_id)
    return BalanceRead(cooperative_id=organisation_id, **summary)


@router.get("/organisations/{organisation_id}/settlements", summary="Settled parts of orders")
async def list_settlements(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> SettlementPage:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    items, cursor = await service.list_settlements(
        session, cooperative_id=organisation_id, page=page
    )
    return SettlementPage(
        items=[SettlementRead.model_validate(s) for s in items], next_cursor=cursor
    )


def _payout_reads(payouts: list[Payout], batches: dict[uuid.UUID, PayoutBatch]) -> list[PayoutRead]:
    reads = []
    for payout in payouts:
        read = PayoutRead.model_validate(payout)
        read.status = "paid" if batches[payout.batch_id].status == "paid" else "scheduled"
        reads.append(read)
    return reads


@router.get("/organisations/{organisation_id}/payouts", summary="Payouts to the cooperative")
async def list_payouts(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> PayoutPage:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    payouts, cursor = await service.list_payouts(session, cooperative_id=organisation_id, page=page)
    batches = await service.batches_by_id(session, list({p.batch_id for p in payouts}))
    return PayoutPage(items=_payout_reads(payouts, batches), next_cursor=cursor)


@router.get("/organisations/{organisation_id}/payout-account", summary="Where payouts go")
async def get_payout_account(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> PayoutAccountRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    account = await service.get_payout_account(session, cooperative_id=organisation_id)
    return PayoutAccountRead.model_validate(account)


@router.put("/organisations/{organisation_id}/payout-account", summary="Set where payouts go")
async def set_payout_account(
    organisation_id: uuid.UUID,
    body: PayoutAccountWrite,
    principal: PrincipalDep,
    session: SessionDep,
) -> PayoutAccountRead:
    found = await organisations_service.access(session, principal, organisation_id, role="owner")
    if found.organisation.kind != "cooperative":
        raise Invalid.field("organisation_id", "Only cooperatives receive payouts.")
    account = await service.set_payout_account(
        session, cooperative_id=organisation_id, data=body.model_dump()
    )
    return PayoutAccountRead.model_validate(account)


# ---------------------------------------------------------------- platform


@router.post(
    "/platform/statements",
    status_code=status.HTTP_201_CREATED,
    tags=["platform"],
    summary="Import a bank statement (CSV body)",
    description="The body is the bank's CSV export (`Content-Type: text/csv`), UTF-8 or, with "
    "`?encoding=gbk`, GBK. Columns by header, Chinese or English: 交易日期/date, 金额/amount "
    "(yuan), 附言/memo, 付款人/payer_name, 付款账号/payer_account, 流水号/transaction_id. "
    "Lines are matched to bank-transfer payments by the reference code in the memo and the "
    "amount; a line imported before is skipped, so importing the same file again changes "
    "nothing. Any unreadable line: 422 listing them, nothing imported. Needs an "
    "`Idempotency-Key`.",
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "交易日期,金额,附言,付款人,付款账号,流水号\n"
                    "2026-11-30,1280.00,货款 NSQ…,北京新发地商贸有限公司,6222…,B2026113000001\n",
                }
            },
            "required": True,
        }
    },
)
async def import_statement(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    user_id: CurrentUserId,
    _: MoneyMoving,
    filename: Annotated[str, Query(max_length=200)] = "statement.csv",
    encoding: Annotated[str, Query(pattern="^(utf-8|gbk|gb18030)$")] = "utf-8",
) -> StatementImportRead:
    await organisations_service.require_platform_operator(session, principal)
    # spooled to a temporary file (memory up to 1 MiB), then read as a stream
    with tempfile.SpooledTemporaryFile(max_size=1_048_576) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        text_lines = io.TextIOWrapper(
            spool, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline=""
        )
        try:
            record = await statements.import_statement(
                session, lines=text_lines, filename=filename, user_id=user_id
            )
        except UnicodeDecodeError as exc:
            raise Invalid.field("body", f"The file is not valid {encoding}: {exc.reason}.") from exc
        text_lines.detach()
    return StatementImportRead.model_validate(record)


@router.get(
    "/platform/statement-lines", tags=["platform"], summary="Statement lines, e.g. the review queue"
)
async def list_statement_lines(
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    review: Annotated[str | None, Query(pattern="^(none|open|resolved)$")] = "open",
    outcome: Annotated[
        str | None, Query(pattern="^(matched|underpaid|overpaid|unmatched)$")
    ] = None,
) -> StatementLinePage:
    await organisations_service.require_platform_operator(session, principal)
    lines, cursor = await statements.list_lines(session, page=page, review=review, outcome=outcome)
    return StatementLinePage(
        items=[StatementLineRead.model_validate(line) for line in lines], next_cursor=cursor
    )


@router.post(
    "/platform/statement-lines/{line_id}/resolve",
    tags=["platform"],
    summary="Decide on a statement line in review (who and why are kept)",
    description="`assign` an unmatched line to a payment by its reference code; `confirm` an "
    "underpaid payment as paid (the platform absorbs the shortfall); `dismiss` with a note. "
    "Needs an `Idempotency-Key`.",
)
async def resolve_statement_line(
    line_id: uuid.UUID,
    body: StatementLineResolve,
    principal: PrincipalDep,
    session: SessionDep,
    user_id: CurrentUserId,
    _: MoneyMoving,
) -> StatementLineRead:
    await organisations_service.require_platform_operator(session, principal)
    line = await statements.resolve_line(
        session,
        line_id=line_id,
        action=body.action,
        note=body.note,
        user_id=user_id,
        reference_code=body.reference_code,
    )
    return StatementLineRead.model_validate(line)


@router.get("/platform/payments/{payment_id}", tags=["platform"], summary="Any payment")
async def get_payment(
    payment_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> PaymentRead:
    await organisations_service.require_platform_operator(session, principal)
    payment = await service.get_payment(session, payment_id=payment_id)
    return (await _payment_reads(session, settings, [payment]))[0]


@router.post(
    "/platform/payments/{payment_id}/refunds",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["platform"],
    summary="Refund part or all of a payment",
    description="Recorded at once and held in the ledger; the provider is asked by the worker "
    "within seconds (status `pending` until then). Never more than was captured in total, even "
    "with concurrent requests (409 `refund_exceeds_captured`). Needs an `Idempotency-Key`.",
)
async def refund_payment(
    payment_id: uuid.UUID,
    body: RefundCreate,
    principal: PrincipalDep,
    session: SessionDep,
    user_id: CurrentUserId,
    _: MoneyMoving,
) -> RefundRead:
    await organisations_service.require_platform_operator(session, principal)
    payment = await service.get_payment(session, payment_id=payment_id, lock=True)
    if body.fulfilment_id is not None:
        await orders_service.get_fulfilment(
            session, fulfilment_id=body.fulfilment_id, order_id=payment.order_id
        )
    refund = await service.request_refund(
        session,
        payment=payment,
        amount=body.amount_fen,
        kind="manual",
        reason=body.reason,
        fulfilment_id=body.fulfilment_id,
        user_id=user_id,
    )
    return RefundRead.model_validate(refund)


def _bank_refund_read(item: service.BankRefund) -> BankRefundRead:
    return BankRefundRead(
        refund=RefundRead.model_validate(item.refund),
        order_ref=short_ref(item.refund.order_id),
        payer_name=item.payer_name,
        payer_account=item.payer_account,
        payer_bank=item.payer_bank,
        exported_at=item.refund.exported_at,
    )


@router.get(
    "/platform/bank-refunds",
    tags=["platform"],
    summary="Refunds of bank transfers waiting for the platform's bank to send them",
    description="Each with the account the money came from (the payment's latest statement "
    "line; empty when unknown), oldest first.",
)
async def list_bank_refunds(
    principal: PrincipalDep, session: SessionDep, page: PageDep
) -> BankRefundPage:
    await organisations_service.require_platform_operator(session, principal)
    items, cursor = await service.bank_refunds(session, page=page)
    return BankRefundPage(items=[_bank_refund_read(i) for i in items], next_cursor=cursor)


@router.post(
    "/platform/bank-refunds/export",
    tags=["platform"],
    summary="A batch-transfer file of the bank refunds to send (CSV, UTF-8 with BOM)",
    description="Every bank refund waiting to be sent that no earlier file held and whose "
    "payer's account and bank are known, each put in this file only (a second upload to the "
    "bank would pay it twice); the same `Idempotency-Key` gives the same file again. The "
    "header `X-Refunds-Left-Out` counts those without a known account (send them by hand).",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_bank_refunds(
    principal: PrincipalDep, session: SessionDep, _: MoneyMoving
) -> Response:
    await organisations_service.require_platform_operator(session, principal)
    ready, left_out = await service.export_bank_refunds(session)
    out = io.StringIO()
    out.write("\ufeff")
    write_payout_file(
        (
            PayoutRow(
                payout_id=str(i.refund.id),
                account_name=i.payer_name,
                account_number=i.payer_account,
                bank_name=i.payer_bank,
                amount=i.refund.amount_fen,
                memo=f"农商桥退款 订单{short_ref(i.refund.order_id)}",
            )
            for i in ready
        ),
        out,
    )
    return Response(
        out.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="bank-refunds.csv"',
            "X-Refunds-Left-Out": str(left_out),
        },
    )


@router.post(
    "/platform/refunds/{refund_id}/sent",
    tags=["platform"],
    summary="Record a bank refund sent by the platform's bank",
    description="The refund succeeds, its money leaves `refunds_payable` and the buyer is "
    "told. 409 `invalid_transition` when it was already recorded sent, 409 "
    "`not_a_bank_refund` for a Stripe refund. Needs an `Idempotency-Key`.",
)
async def bank_refund_sent(
    refund_id: uuid.UUID,
    body: BankRefundSent,
    principal: PrincipalDep,
    session: SessionDep,
    user_id: CurrentUserId,
    _: MoneyMoving,
) -> RefundRead:
    await organisations_service.require_platform_operator(session, principal)
    refund = await service.mark_bank_refund_sent(
        session, refund_id=refund_id, user_id=user_id, bank_reference=body.bank_reference
    )
    return RefundRead.model_validate(refund)


@router.post(
    "/platform/refunds/{refund_id}/bounced",
    tags=["platform"],
    summary="Record a bank refund that the payer's bank sent back",
    description="The money is in the platform's account again: the refund waits to be sent "
    "once more (pending, in the next export), to the account given here when it is, and the "
    "buyer is told. 409 `invalid_transition` for a refund not recorded sent. Needs an "
    "`Idempotency-Key`.",
)
async def bank_refund_bounced(
    refund_id: uuid.UUID,
    body: BankRefundBounced,
    principal: PrincipalDep,
    session: SessionDep,
    user_id: CurrentUserId,
    _: MoneyMoving,
) -> RefundRead:
    await organisations_service.require_platform_operator(session, principal)
    refund = await service.bank_refund_bounced(
        session, refund_id=refund_id, reason=body.reason, payee=body.payee(), user_id=user_id
    )
    return RefundRead.model_validate(refund)


async def _batch_read(
    session: SessionDep, batch: PayoutBatch, skipped: list[uuid.UUID] | None = None
) -> PayoutBatchRead:
    payouts = await service.payouts_of(session, batch.id)
    return PayoutBatchRead(
        id=batch.id,
        status=batch.status,
        currency=batch.currency,
        total_fen=batch.total_fen,
        payout_count=batch.payout_count,
        created_at=batch.created_at,
        paid_at=batch.paid_at,
        payouts=_payout_reads(payouts, {batch.id: batch}),
        skipped_without_account=skipped or [],
    )


@router.post(
    "/platform/payout-batches",
    status_code=status.HTTP_201_CREATED,
    tags=["platform"],
    summary="Build a payout batch of everything due to cooperatives",
    description="One payout per cooperative with a positive payable balance and a payout "
    "account. Two builds at once make one batch (the other gets 409 `nothing_due`). Needs an "
    "`Idempotency-Key`.",
)
async def build_payout_batch(
    principal: PrincipalDep, session: SessionDep, user_id: CurrentUserId, _: MoneyMoving
) -> PayoutBatchRead:
    await organisations_service.require_platform_operator(session, principal)
    batch, skipped = await service.build_payout_batch(session, user_id=user_id)
    await session.refresh(batch)
    return await _batch_read(session, batch, skipped)


@router.get("/platform/payout-batches/{batch_id}", tags=["platform"], summary="A payout batch")
async def get_payout_batch(
    batch_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> PayoutBatchRead:
    await organisations_service.require_platform_operator(session, principal)
    return await _batch_read(session, await service.get_batch(session, batch_id=batch_id))


@router.get(
    "/platform/payout-batches/{batch_id}/file",
    tags=["platform"],
    summary="The bank payout file of a batch (CSV, UTF-8 with BOM)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def payout_file(
    batch_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    await organisations_service.require_platform_operator(session, principal)
    batch = await service.get_batch(session, batch_id=batch_id)
    out = io.StringIO()
    out.write("\ufeff")
    write_payout_file(
        (
            PayoutRow(
                payout_id=str(p.id),
                account_name=p.account_name,
                account_number=p.account_number,
                bank_name=p.bank_name,
                amount=p.amount_fen,
                memo=f"农商桥结算 {short_ref(batch.id)}",
            )
            for p in await service.payouts_of(session, batch.id)
        ),
        out,
    )
    return Response(
        out.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="payout-{short_ref(batch.id)}.csv"'},
    )


@router.post(
    "/platform/payout-batches/{batch_id}/paid",
    tags=["platform"],
    summary="Mark a payout batch paid by the bank",
    description="Needs an `Idempotency-Key`.",
)
async def mark_batch_paid(
    batch_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    user_id: CurrentUserId,
    _: MoneyMoving,
) -> PayoutBatchRead:
    await organisations_service.require_platform_operator(session, principal)
    batch = await service.mark_batch_paid(session, batch_id=batch_id, user_id=user_id)
    await session.refresh(batch)
    return await _batch_read(session, batch)


@router.get("/platform/ledger", tags=["platform"], summary="Trial balance of every ledger account")
async def trial_balance(principal: PrincipalDep, session: SessionDep) -> TrialBalance:
    await organisations_service.require_platform_operator(session, principal)
    rows = await ledger.trial_balance(session)
    return TrialBalance(
        accounts=[
            LedgerAccountBalance(
                kind=kind, organisation_id=org, provider=provider, currency=currency, balance_fen=b
            )
            for kind, org, provider, currency, b in rows
        ],
        total_fen=sum(row[4] for row in rows),
    )


# ---------------------------------------------------------------- webhooks


@router.post(
    "/payments/stripe/webhook",
    tags=["webhooks"],
    summary="Stripe events (signed)",
    description="Verified with the endpoint's signing secret (300 s tolerance) before anything "
    "is written; stored once per event id, answered at once, handled right after.",
)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    providers: PaymentsDep,
    background: BackgroundTasks,
) -> WebhookAck:
    provider = providers.get("stripe")
    if provider is None:
        raise NotFound("Stripe is not configured here.", code="not_configured")
    payload = await request.body()
    try:
        _, new = await service.receive_webhook(
            session, provider=provider, payload=payload, headers=request.headers
        )
    except WebhookRejected as exc:
        raise WebhookRefused(exc.message, status_code=exc.status_code) from exc
    if new:
        background.add_task(_handle_soon, request)
    return WebhookAck(duplicate=not new)


class WebhookRefused(MarketError):
    code = "webhook_rejected"
    title = "Webhook rejected"

    def __init__(self, detail: str, *, status_code: int) -> None:
        super().__init__(detail)
        self.status = status_code


async def _handle_soon(request: Request) -> None:
    """After the response: handle the stored events now rather than at the next worker
    round. A failure here is harmless: the worker handles what is left."""
    try:
        async with request.app.state.sessionmaker() as session, session.begin():
            await service.handle_events(session, request.app.state.payments)
    except Exception:
        log.exception("handling webhook events failed; the worker retries")
