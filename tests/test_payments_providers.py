"""The payment providers against real peers.

Offline bank transfer: reference codes, the statement reader and the payout file, on data made
here. Stripe: against localstripe (a stateful Stripe fake run as a separate process,
tests/peers.py), where the tests also play the buyer's front end with the stripe library; and
against a small HTTP server started here that answers with Stripe's error responses, for the
faults localstripe cannot produce (declines on our own calls, 5xx, rate limits)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import queue
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import stripe

from payments.base import (
    CaptureMethod,
    EventKind,
    NotSupported,
    PaymentDeclined,
    PaymentProvider,
    PaymentRequest,
    PaymentStatus,
    ProviderError,
    ProviderUnavailable,
    RefundStatus,
    WebhookRejected,
)
from payments.offline import (
    ALPHABET,
    PAYOUT_HEADER,
    BankAccount,
    OfflineBankTransfer,
    PayoutRow,
    StatementError,
    StatementLine,
    find_reference,
    is_valid_reference,
    read_statement,
    reference_code,
    write_payout_file,
)
from payments.stripe import StripePayments
from tests.peers import free_port, stripe_server

PAYMENT_ID = uuid.UUID("5f0c9a52-7d1e-4c8b-9a0e-3b2f6d4e8a17")
WEBHOOK_SECRET = "whsec_agribridge_test"


# ================================================================ reference codes


def test_reference_code_is_deterministic_and_typeable():
    code = reference_code(PAYMENT_ID)
    assert code == reference_code(uuid.UUID(str(PAYMENT_ID)))
    assert len(code) == 15
    assert code.startswith("NSQ")
    assert set(code[3:]) <= set(ALPHABET)
    assert not set(code) & set("ILOU")  # nothing to confuse with 1, 0 or V
    assert is_valid_reference(code)
    assert reference_code(uuid.uuid4()) != code


def test_reference_codes_are_unique_over_100k_payments():
    codes = {reference_code(uuid.uuid4()) for _ in range(100_000)}
    assert len(codes) == 100_000


def _substitutions(code: str) -> Iterator[str]:
    for position in range(len(code)):
        for char in ALPHABET:
            if char != code[position]:
                yield code[:position] + char + code[position + 1 :]


def _adjacent_swaps(code: str) -> Iterator[str]:
    for position in range(len(code) - 1):
        a, b = code[position], code[position + 1]
        if a != b:
            yield code[:position] + b + a + code[position + 2 :]


def test_checksum_catches_every_substitution_and_adjacent_swap():
    checked = 0
    for n in range(200):
        code = reference_code(uuid.uuid5(uuid.NAMESPACE_URL, f"payment-{n}"))
        for typo in (*_substitutions(code), *_adjacent_swaps(code)):
            assert not is_valid_reference(typo), (code, typo)
            assert find_reference(f"货款 {typo}") is None, (code, typo)
            checked += 1
    assert checked > 200 * 15 * 31


def test_find_reference_in_free_text_memos():
    code = reference_code(PAYMENT_ID)
    grouped = f"{code[:3]}-{code[3:7]} {code[7:11]}-{code[11:]}".lower()
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in code)  # typed with a Chinese IME
    for memo in (
        code,
        f"货款{code}",
        f"支付 农产品订单 {grouped} 谢谢",
        f"甘肃白银枸杞 参考号：{fullwidth}。",
        f"付款({code.lower()})张三",
        f"N 无关 NSQ 也无关 {code}",
    ):
        assert find_reference(memo) == code, memo
    assert is_valid_reference(grouped)
    assert not is_valid_reference(code + "X")
    assert not is_valid_reference(code[:-1])


def test_find_reference_skips_wrong_checksums_and_plain_text():
    code = reference_code(PAYMENT_ID)
    last = ALPHABET[(ALPHABET.index(code[-1]) + 1) % 32]
    wrong = code[:-1] + last
    assert not is_valid_reference(wrong)
    assert find_reference(f"货款 {wrong}") is None
    other = reference_code(uuid.uuid5(uuid.NAMESPACE_URL, "another"))
    assert find_reference(f"货款 {wrong}，更正：{other}") == other
    assert find_reference("货款 无参考号") is None
    assert find_reference("") is None


# ================================================================ bank statements


def _read(text: str) -> list[StatementLine | StatementError]:
    return list(read_statement(io.StringIO(text, newline="")))


def test_statement_with_chinese_headers_and_bom():
    code = reference_code(PAYMENT_ID)
    text = (
        "\ufeff交易日期,流水号,付款人,付款账号,金额,附言,币种\r\n"
        f'2024-05-01,TX001,白银市枸杞合作社,6228480000000001,"1,234.50",货款 {code.lower()},'
        "人民币\r\n"
        "\r\n"
        "2024/5/2,TX002,李四,6228480000000002,1234.5,运费,\r\n"
        "20240503,TX003,王五,6228480000000003,0.01,,CNY\r\n"
    )
    lines = _read(text)
    assert all(isinstance(line, StatementLine) for line in lines), lines
    first, second, third = lines
    assert isinstance(first, StatementLine)
    assert first.line_number == 2
    assert first.transaction_id == "TX001"
    assert first.booked_on == dt.date(2024, 5, 1)
    assert first.amount == 123450
    assert first.currency == "CNY"
    assert first.payer_name == "白银市枸杞合作社"
    assert first.payer_account == "6228480000000001"
    assert first.reference_code == code
    assert isinstance(second, StatementLine) and isinstance(third, StatementLine)
    assert second.line_number == 4  # the blank line is skipped, and still counted
    assert (second.booked_on, second.amount, second.reference_code) == (
        dt.date(2024, 5, 2),
        123450,
        None,
    )
    assert (third.booked_on, third.amount, third.memo) == (dt.date(2024, 5, 3), 1, "")


def test_statement_with_english_headers_in_any_order():
    code = reference_code(PAYMENT_ID)
    text = (
        "Transaction_ID,Amount,Date,Memo,Payer_Name,Payer_Account,Currency\n"
        f"B-77,99999999.99,2024-06-30 14:05:09,order {code},Zhang San,622848,usd\n"
    )
    (line,) = _read(text)
    assert line == StatementLine(
        line_number=2,
        transaction_id="B-77",
        booked_on=dt.date(2024, 6, 30),
        amount=9_999_999_999,
        currency="USD",
        memo=f"order {code}",
        payer_name="Zhang San",
        payer_account="622848",
        reference_code=code,
    )


def test_statement_reads_both_summary_and_memo_columns():
    code = reference_code(PAYMENT_ID)
    text = f"交易日期,贷方金额,摘要,附言,流水号\n2024-05-01,10.00,转账,{code},T1\n"
    (line,) = _read(text)
    assert isinstance(line, StatementLine)
    assert line.amount == 1000
    assert line.memo == f"{code} 转账"
    assert line.reference_code == code


def test_statement_errors_name_the_line_and_column_and_reading_goes_on():
    text = (
        "交易日期,金额,附言,流水号\n"
        "2024-05-01,12.345,a,T1\n"  # 2: three decimals
        "2024-05-01,-5.00,b,T2\n"  # 3: negative: money out, skipped
        "2024-05-01,0.00,c,T3\n"  # 4: zero
        "2024-05-01,12.00,d,\n"  # 5: no transaction id
        "2024-02-30,12.00,e,T5\n"  # 6: no such date
        "yesterday,abc,f,T6\n"  # 7: two bad cells
        "2024-05-01,12.00,g,T7,extra\n"  # 8: more fields than the header
        "2024-05-01,8.00,h,T8\n"  # 9: fine
    )
    results = _read(text)
    errors = [r for r in results if isinstance(r, StatementError)]
    assert [(e.line_number, e.column) for e in errors] == [
        (2, "金额"),
        (4, "金额"),
        (5, "流水号"),
        (6, "交易日期"),
        (7, "交易日期"),
        (7, "金额"),
        (8, None),
    ]
    assert "more than 2 decimals" in errors[0].message
    assert "zero" in errors[1].message
    assert "transaction id" in errors[2].message
    assert "not a real date" in errors[3].message
    good = [r for r in results if isinstance(r, StatementLine)]
    assert [(g.line_number, g.transaction_id, g.amount) for g in good] == [(9, "T8", 800)]


def test_a_whole_account_statement_keeps_only_the_money_that_came_in():
    """Payouts and bank charges are listed too, in a debit column (empty credit) or with a
    negative amount: skipped, not an error that refuses the file."""
    text = (
        "交易日期,借方发生额,贷方发生额,摘要,流水号\n"
        "2024-05-01,,1280.00,货款,C1\n"
        "2024-05-01,35000.00,,代付合作社,D1\n"
        "2024-05-01,2.50,0.00,手续费,D2\n"
    )
    results = _read(text)
    assert [(r.line_number, r.transaction_id, r.amount) for r in results] == [(2, "C1", 128000)]
    signed = _read("交易日期,金额,流水号\n2024-05-01,-35000.00,D1\n2024-05-01,1.00,C2\n")
    assert [(r.transaction_id, r.amount) for r in signed] == [("C2", 100)]


def test_statement_header_without_required_columns():
    results = _read("日期描述,金额,附言\n2024-05-01,1.00,x\n")
    assert all(isinstance(r, StatementError) for r in results)
    assert [(r.line_number, r.column) for r in results] == [(1, "交易日期"), (1, "流水号")]
    assert "no date column" in results[0].message
    assert "no transaction id column" in results[1].message
    assert _read("") == [
        StatementError(line_number=1, column=None, message="The statement is empty.")
    ]


def test_statement_is_read_lazily_in_constant_memory():
    """200,000 lines come from a generator; the reader must neither read ahead nor keep what
    it has read. Memory is traced over 20,000 lines in the middle (tracing all of them is
    slow): keeping each line would take megabytes there, streaming takes a few kB."""
    code = reference_code(PAYMENT_ID)
    produced = 0

    def lines() -> Iterator[str]:
        nonlocal produced
        yield "交易日期,金额,附言,付款人,流水号\n"
        for n in range(200_000):
            produced += 1
            yield f"2024-05-01,{n % 5000 + 1}.25,货款 {code} 第{n}笔,合作社{n},TX{n:07d}\n"

    count = total = 0
    peak = None
    for line in read_statement(lines()):
        assert isinstance(line, StatementLine)
        count += 1
        assert produced - count <= 1, "the reader reads ahead"
        total += line.amount
        if count == 100_000:
            tracemalloc.start()
        elif count == 120_000:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert count == 200_000
    assert line.transaction_id == "TX0199999" and line.reference_code == code
    assert total == sum((n % 5000 + 1) * 100 + 25 for n in range(200_000))
    assert peak is not None and peak < 1_000_000, peak


# ================================================================ payout files


def test_payout_file_round_trip_with_chinese_names_and_exact_yuan():
    rows = [
        PayoutRow(
            "po-1",
            "白银市会宁县枸杞专业合作社",
            "6228 4800 0000 0001",
            "中国农业银行会宁支行",
            123450,
            "5月货款",
        ),
        PayoutRow("po-2", "张三", "6217000000000002", "中国建设银行", 1, "退款,订单 A-17"),
        PayoutRow("po-3", "李四", "6217000000000003", "甘肃银行", 10_000_000_000, '说明"含引号"'),
    ]
    out = io.StringIO(newline="")
    write_payout_file(iter(rows), out)
    text = out.getvalue()
    assert text.startswith("收款户名,收款账号,开户行,金额(元),用途/附言,业务参考号\r\n")
    back = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["金额(元)"] for r in back] == ["1234.50", "0.01", "100000000.00"]
    for row, read in zip(rows, back, strict=True):
        assert tuple(read) == PAYOUT_HEADER
        assert read["收款户名"] == row.account_name
        assert read["收款账号"] == row.account_number
        assert read["开户行"] == row.bank_name
        assert read["用途/附言"] == row.memo
        assert read["业务参考号"] == row.payout_id
        assert int(Decimal(read["金额(元)"]) * 100) == row.amount


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        (PayoutRow("po-1", "张三", "6217", "建行", 0, ""), "amount"),
        (PayoutRow("po-1", "张三", "6217", "建行", -100, ""), "amount"),
        (PayoutRow("po-1", "张三\n李四", "6217", "建行", 100, ""), "收款户名"),
        (PayoutRow("po-1", "张三", "", "建行", 100, ""), "收款账号"),
    ],
)
def test_payout_file_refuses_bad_rows(row: PayoutRow, complaint: str):
    with pytest.raises(ValueError, match=complaint):
        write_payout_file([row], io.StringIO(newline=""))


# ================================================================ offline provider


def _request(**changes: Any) -> PaymentRequest:
    fields: dict[str, Any] = {
        "amount": 123450,
        "currency": "CNY",
        "idempotency_key": f"pay-{uuid.uuid4()}",
        "reference": str(uuid.uuid4()),
        "description": "枸杞 5kg × 10",
        "method_types": ("card",),
        "capture_method": CaptureMethod.manual,
        "metadata": {"order_id": "ord-1"},
    }
    fields.update(changes)
    return PaymentRequest(**fields)


async def test_offline_provider_gives_transfer_instructions():
    provider = OfflineBankTransfer(
        BankAccount("农商桥平台资金监管账户", "6222 0000", "中国农业银行白银分行")
    )
    assert isinstance(provider, PaymentProvider)
    assert provider.capture_methods == {"bank_transfer": CaptureMethod.automatic}
    payment = await provider.create_payment(
        _request(reference=str(PAYMENT_ID), currency="cny", method_types=("bank_transfer",))
    )
    code = reference_code(PAYMENT_ID)
    assert payment.provider == "offline"
    assert payment.provider_id == code
    assert payment.status is PaymentStatus.pending
    assert (payment.amount, payment.amount_capturable, payment.amount_captured) == (123450, 0, 0)
    assert payment.capture_method is CaptureMethod.automatic
    assert payment.instructions is not None
    assert payment.instructions.reference_code == code
    assert payment.instructions.account_name == "农商桥平台资金监管账户"
    assert payment.instructions.bank_name == "中国农业银行白银分行"
    assert (payment.instructions.amount, payment.instructions.currency) == (123450, "CNY")
    assert payment.metadata == {"order_id": "ord-1", "payment_id": str(PAYMENT_ID)}

    with pytest.raises(ProviderError) as bad:
        await provider.create_payment(_request(reference="order-17"))
    assert bad.value.code == "invalid_reference"
    with pytest.raises(ProviderError):
        await provider.create_payment(_request(amount=0))


async def test_offline_provider_cannot_look_up_or_capture_but_cancels_and_accepts_refunds():
    provider = OfflineBankTransfer(BankAccount("测试账户", "6222", "测试银行"))
    code = reference_code(PAYMENT_ID)
    with pytest.raises(NotSupported):
        await provider.retrieve_payment(code)
    with pytest.raises(NotSupported):
        await provider.capture(code, amount=100, idempotency_key="cap-1")
    cancelled = await provider.cancel(code, idempotency_key="cancel-1")
    assert cancelled.status is PaymentStatus.cancelled
    assert cancelled.amount_captured == 0
    refund = await provider.refund(
        code, amount=5000, idempotency_key="refund-7", metadata={"refund_id": "r7"}
    )
    assert refund.provider_id == "bank-refund-refund-7"
    assert refund.payment_provider_id == code
    assert (refund.amount, refund.status) == (5000, RefundStatus.pending)  # the bank sends it
    assert refund.metadata == {"refund_id": "r7"}
    assert await provider.list_refunds(code) == []
    with pytest.raises(ProviderError):
        await provider.refund("NSQ-not-a-code", amount=1, idempotency_key="k", metadata={})
    with pytest.raises(WebhookRejected) as rejected:
        provider.parse_webhook(b"{}", {})
    assert rejected.value.status_code == 404
    assert (await provider.health()).ok


# ================================================================ Stripe on localstripe


@pytest.fixture(scope="module")
def stripe_url() -> Iterator[str]:
    with stripe_server() as url:
        # localstripe reloads what earlier runs left in its pickle file: start empty
        httpx.delete(f"{url}/_config/data").raise_for_status()
        yield url


@pytest.fixture
async def provider(stripe_url: str) -> AsyncIterator[StripePayments]:
    payments = StripePayments(
        "sk_test_agribridge",
        api_base=stripe_url,
        webhook_secret=WEBHOOK_SECRET,
        localstripe_compat=True,
    )
    yield payments
    await payments.close()


@pytest.fixture
async def buyer(stripe_url: str) -> AsyncIterator[stripe.StripeClient]:
    """The buyer's front end. In production that is Stripe.js with the publishable key and
    the client secret; localstripe only lets a secret key attach a payment method (by
    modifying the intent: it cannot confirm with a payment_method argument)."""
    http = stripe.HTTPXClient()
    client = stripe.StripeClient(
        "sk_test_buyer", base_addresses={"api": stripe_url}, http_client=http
    )
    yield client
    await http.close_async()


async def _pay(buyer: stripe.StripeClient, intent_id: str, card: str) -> stripe.PaymentIntent:
    method = await buyer.v1.payment_methods.create_async(
        params={
            "type": "card",
            "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await buyer.v1.payment_intents.update_async(intent_id, params={"payment_method": method.id})
    return await buyer.v1.payment_intents.confirm_async(intent_id)


async def test_stripe_card_authorised_then_partly_captured_and_refunded(provider, buyer):
    assert isinstance(provider, PaymentProvider)
    request = _request(amount=10_000, metadata={"order_id": "ord-9"})
    created = await provider.create_payment(request)
    assert created.provider == "stripe"
    assert created.provider_id.startswith("pi_")
    assert created.status is PaymentStatus.pending
    assert created.capture_method is CaptureMethod.manual
    assert created.client_secret
    assert (created.amount, created.currency) == (10_000, "CNY")
    assert created.metadata["payment_id"] == request.reference
    assert created.metadata["order_id"] == "ord-9"
    assert created.metadata["description"] == request.description

    await _pay(buyer, created.provider_id, "4242424242424242")
    authorised = await provider.retrieve_payment(created.provider_id)
    assert authorised.status is PaymentStatus.requires_capture
    assert (authorised.amount_capturable, authorised.amount_captured) == (10_000, 0)

    captured = await provider.capture(
        created.provider_id, amount=6_000, idempotency_key=f"cap-{request.reference}"
    )
    assert captured.status is PaymentStatus.succeeded
    assert (captured.amount_capturable, captured.amount_captured) == (0, 6_000)
    assert (await provider.retrieve_payment(created.provider_id)).amount_captured == 6_000
    # the released 40.00 is no refund of ours
    assert await provider.list_refunds(created.provider_id) == []

    first = await provider.refund(
        created.provider_id, amount=2_000, idempotency_key="refund-1", metadata={"refund_id": "r1"}
    )
    assert first.status is RefundStatus.succeeded
    assert (first.amount, first.currency) == (2_000, "CNY")
    assert first.payment_provider_id == created.provider_id
    rest = await provider.refund(
        created.provider_id, amount=4_000, idempotency_key="refund-2", metadata={"refund_id": "r2"}
    )
    refunds = await provider.list_refunds(created.provider_id)
    by_metadata = {refund.metadata.get("refund_id"): refund for refund in refunds}
    assert set(by_metadata) == {"r1", "r2"}
    assert by_metadata["r1"].provider_id == first.provider_id
    assert by_metadata["r2"].provider_id == rest.provider_id
    assert sum(refund.amount for refund in refunds) == 6_000
    # what was captured stays what was captured; refunds are counted separately
    assert (await provider.retrieve_payment(created.provider_id)).amount_captured == 6_000


async def test_stripe_automatic_capture(provider, buyer):
    created = await provider.create_payment(
        _request(amount=2_599, capture_method=CaptureMethod.automatic)
    )
    assert created.capture_method is CaptureMethod.automatic
    await _pay(buyer, created.provider_id, "4242424242424242")
    paid = await provider.retrieve_payment(created.provider_id)
    assert paid.status is PaymentStatus.succeeded
    assert (paid.amount_capturable, paid.amount_captured) == (0, 2_599)
    refund = await provider.refund(
        created.provider_id, amount=2_599, idempotency_key="full", metadata={}
    )
    assert refund.status is RefundStatus.succeeded
    assert [r.provider_id for r in await provider.list_refunds(created.provider_id)] == [
        refund.provider_id
    ]


async def test_stripe_cancel(provider, buyer):
    unpaid = await provider.create_payment(_request())
    cancelled = await provider.cancel(unpaid.provider_id, idempotency_key="c1")
    assert cancelled.status is PaymentStatus.cancelled

    authorised = await provider.create_payment(_request())
    await _pay(buyer, authorised.provider_id, "4242424242424242")
    voided = await provider.cancel(authorised.provider_id, idempotency_key="c2")
    assert voided.status is PaymentStatus.cancelled
    assert voided.amount_captured == 0
    assert (await provider.retrieve_payment(authorised.provider_id)).status is (
        PaymentStatus.cancelled
    )
    with pytest.raises(ProviderError):  # nothing left to cancel
        await provider.cancel(authorised.provider_id, idempotency_key="c3")


async def test_stripe_declined_card(provider, buyer):
    """The decline happens at confirmation, in the buyer's front end; we see it on the
    payment afterwards. (localstripe declines 4000000000000341 when charged;
    4000000000000002 only when attached to a customer.)"""
    created = await provider.create_payment(_request(amount=5_000))
    with pytest.raises(stripe.CardError):
        await _pay(buyer, created.provider_id, "4000000000000341")
    seen = await provider.retrieve_payment(created.provider_id)
    assert seen.status is PaymentStatus.pending
    assert seen.failure_message == "Your card was declined."
    assert seen.amount_captured == 0
    with pytest.raises(ProviderError) as capture:
        await provider.capture(created.provider_id, amount=5_000, idempotency_key="cap")
    assert not isinstance(capture.value, ProviderUnavailable)
    with pytest.raises(ProviderError) as refund:
        await provider.refund(created.provider_id, amount=5_000, idempotency_key="r", metadata={})
    assert "Cannot refund a failed payment" in refund.value.message


async def test_stripe_refusals_become_provider_errors(provider):
    with pytest.raises(ProviderError) as invalid:
        await provider.create_payment(_request(amount=0))
    assert type(invalid.value) is ProviderError
    assert invalid.value.message.startswith("Stripe refused the request")
    with pytest.raises(ProviderError) as unknown:
        await provider.retrieve_payment("pi_doesnotexist")
    assert type(unknown.value) is ProviderError


async def test_stripe_checks_method_types_before_calling(provider):
    assert provider.capture_methods == {
        "card": CaptureMethod.manual,
        "alipay": CaptureMethod.automatic,
        "wechat_pay": CaptureMethod.automatic,
    }
    with pytest.raises(NotSupported, match="alipay"):
        await provider.create_payment(_request(method_types=("card", "alipay")))
    with pytest.raises(NotSupported, match="paypal"):
        await provider.create_payment(_request(method_types=("paypal",)))
    wallets = await provider.create_payment(
        _request(method_types=("alipay", "wechat_pay"), capture_method=CaptureMethod.automatic)
    )
    assert wallets.status is PaymentStatus.pending


async def test_stripe_unreachable_is_unavailable():
    payments = StripePayments("sk_test_agribridge", api_base=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ProviderUnavailable):
            await payments.retrieve_payment("pi_123")
        with pytest.raises(ProviderUnavailable):
            await payments.create_payment(_request())
        health = await payments.health()
        assert not health.ok
    finally:
        await payments.close()


# ================================================================ Stripe error responses


class _LocalServer(ThreadingHTTPServer):
    """A small HTTP server on 127.0.0.1 in a thread: it records what it receives and answers
    with `canned` (status, JSON body)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.canned: tuple[int, dict[str, Any]] = (200, {})
        self.requests: queue.Queue[tuple[str, str, dict[str, str], bytes]] = queue.Queue()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> _LocalServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Recorder(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        server = self.server
        assert isinstance(server, _LocalServer)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server.requests.put((self.command, self.path, dict(self.headers.items()), body))
        status, answer = server.canned
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Stripe-Should-Retry", "false")  # no retries: keeps the test quick
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def canned_server() -> Iterator[_LocalServer]:
    with _LocalServer(_Recorder) as server:
        yield server


@pytest.mark.parametrize(
    ("status", "error", "raised", "code"),
    [
        (
            402,
            {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            },
            PaymentDeclined,
            "insufficient_funds",
        ),
        (
            500,
            {"type": "api_error", "message": "boom"},
            ProviderUnavailable,
            "provider_unavailable",
        ),
        (
            503,
            {"type": "api_error", "message": "down"},
            ProviderUnavailable,
            "provider_unavailable",
        ),
        (
            429,
            {"type": "invalid_request_error", "message": "slow"},
            ProviderUnavailable,
            "provider_rate_limited",
        ),
        (
            401,
            {"type": "invalid_request_error", "message": "bad key"},
            ProviderError,
            "provider_misconfigured",
        ),
        (
            400,
            {"type": "idempotency_error", "message": "reuse"},
            ProviderError,
            "idempotency_conflict",
        ),
    ],
)
async def test_stripe_error_responses_are_translated(canned_server, status, error, raised, code):
    canned_server.canned = (status, {"error": error})
    payments = StripePayments("sk_test_agribridge", api_base=canned_server.url)
    try:
        with pytest.raises(ProviderError) as caught:
            await payments.create_payment(_request())
    finally:
        await payments.close()
    assert type(caught.value) is raised
    assert isinstance(caught.value.__cause__, stripe.StripeError)
    assert caught.value.code == code
    if status == 402:
        assert caught.value.message == "Your card has insufficient funds."


async def test_stripe_request_shape_for_the_real_api(canned_server):
    """Without localstripe_compat the request is what the library's API version wants:
    allowed_payment_method_types (payment_method_types is refused since 2026-09-30) and a
    real description; and every call that moves money carries its idempotency key.
    localstripe checks neither; the requests as sent can be checked here."""
    refusal = {"error": {"type": "invalid_request_error", "message": "x"}}
    canned_server.canned = (400, refusal)
    while not canned_server.requests.empty():
        canned_server.requests.get()
    payments = StripePayments("sk_test_agribridge", api_base=canned_server.url)
    request = _request(
        method_types=("alipay", "wechat_pay"), capture_method=CaptureMethod.automatic
    )
    calls = [
        ("/v1/payment_intents", request.idempotency_key, lambda: payments.create_payment(request)),
        (
            "/v1/payment_intents/pi_1/capture",
            "cap-1",
            lambda: payments.capture("pi_1", amount=100, idempotency_key="cap-1"),
        ),
        (
            "/v1/payment_intents/pi_1/cancel",
            "cancel-1",
            lambda: payments.cancel("pi_1", idempotency_key="cancel-1"),
        ),
        (
            "/v1/refunds",
            "refund-1",
            lambda: payments.refund(
                "pi_1", amount=100, idempotency_key="refund-1", metadata={"r": "1"}
            ),
        ),
    ]
    forms = []
    try:
        for expected_path, key, call in calls:
            with pytest.raises(ProviderError):
                await call()
            method, path, headers, body = canned_server.requests.get(timeout=5)
            assert (method, path) == ("POST", expected_path)
            sent = {name.lower(): value for name, value in headers.items()}
            assert sent["idempotency-key"] == key
            forms.append(parse_qs(body.decode()))
    finally:
        await payments.close()
    assert canned_server.requests.empty()
    created, captured, _, refunded = forms
    assert created["allowed_payment_method_types[0]"] == ["alipay"]
    assert created["allowed_payment_method_types[1]"] == ["wechat_pay"]
    assert not any(key.startswith("payment_method_types") for key in created)
    assert created["description"] == [request.description]
    assert created["amount"] == ["123450"]
    assert created["currency"] == ["cny"]
    assert created["capture_method"] == ["automatic"]
    assert created["metadata[payment_id]"] == [request.reference]
    assert created["metadata[order_id]"] == ["ord-1"]
    assert created["expand[0]"] == ["latest_charge"]
    assert captured["amount_to_capture"] == ["100"]
    assert refunded == {"payment_intent": ["pi_1"], "amount": ["100"], "metadata[r]": ["1"]}


# ================================================================ Stripe webhooks


def _signed(payload: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    signature = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={signature}"


def _event(kind: str, subject: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:14]}",
            "object": "event",
            "type": kind,
            "created": 1_714_521_600,
            "data": {"object": subject},
        }
    ).encode()


@pytest.mark.parametrize(
    ("kind", "subject", "expected", "payment_id"),
    [
        (
            "payment_intent.amount_capturable_updated",
            {"id": "pi_1"},
            EventKind.payment_authorised,
            "pi_1",
        ),
        ("payment_intent.succeeded", {"id": "pi_2"}, EventKind.payment_succeeded, "pi_2"),
        ("payment_intent.payment_failed", {"id": "pi_3"}, EventKind.payment_failed, "pi_3"),
        ("payment_intent.canceled", {"id": "pi_4"}, EventKind.payment_cancelled, "pi_4"),
        (
            "charge.refunded",
            {"id": "ch_5", "payment_intent": "pi_5"},
            EventKind.refund_updated,
            "pi_5",
        ),
        (
            "charge.refund.updated",
            {"id": "re_6", "payment_intent": "pi_6"},
            EventKind.refund_updated,
            "pi_6",
        ),
        (
            "refund.created",
            {"id": "re_7", "payment_intent": "pi_7"},
            EventKind.refund_updated,
            "pi_7",
        ),
        ("customer.created", {"id": "cus_8"}, EventKind.other, None),
    ],
)
def test_stripe_webhook_kinds(provider, kind, subject, expected, payment_id):
    payload = _event(kind, subject)
    event = provider.parse_webhook(payload, {"stripe-signature": _signed(payload)})
    assert event.provider == "stripe"
    assert event.kind is expected
    assert event.provider_type == kind
    assert event.payment_provider_id == payment_id
    assert event.event_id == json.loads(payload)["id"]
    assert event.created_at == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    assert event.payload == json.loads(payload)


def test_stripe_webhook_rejections(provider):
    payload = _event("payment_intent.succeeded", {"id": "pi_1"})
    assert provider.parse_webhook(payload, {"STRIPE-SIGNATURE": _signed(payload)}).kind is (
        EventKind.payment_succeeded
    )
    cases = [
        ({"Stripe-Signature": _signed(payload, secret="whsec_other")}, payload, 401),
        ({"Stripe-Signature": _signed(payload)}, payload + b" ", 401),  # body changed
        ({}, payload, 400),
        ({"Stripe-Signature": "v1=abc"}, payload, 400),
        ({"Stripe-Signature": _signed(payload, at=int(time.time()) - 301)}, payload, 400),
        ({"Stripe-Signature": _signed(b"not json")}, b"not json", 400),
        ({"Stripe-Signature": _signed(b'{"id": 1}')}, b'{"id": 1}', 400),
    ]
    for headers, body, status in cases:
        with pytest.raises(WebhookRejected) as rejected:
            provider.parse_webhook(body, headers)
        assert rejected.value.status_code == status, (headers, body, rejected.value.message)
    fresh = _signed(payload, at=int(time.time()) - 290)
    assert provider.parse_webhook(payload, {"stripe-signature": fresh}).event_id

    unconfigured = StripePayments("sk_test_agribridge")
    with pytest.raises(WebhookRejected) as no_secret:
        unconfigured.parse_webhook(payload, {"stripe-signature": _signed(payload)})
    assert no_secret.value.status_code == 400
    assert "secret" in no_secret.value.message


async def test_stripe_webhook_from_localstripe_is_verified(stripe_url, provider, buyer):
    with _LocalServer(_Recorder) as receiver:
        async with httpx.AsyncClient() as http:
            registered = await http.post(
                f"{stripe_url}/_config/webhooks/agribridge-test",
                data={
                    "url": f"{receiver.url}/webhooks/stripe",
                    "secret": WEBHOOK_SECRET,
                    "events[]": ["payment_intent.succeeded", "payment_intent.payment_failed"],
                },
            )
        assert registered.status_code == 200, registered.text

        created = await provider.create_payment(
            _request(amount=1_888, capture_method=CaptureMethod.automatic)
        )
        await _pay(buyer, created.provider_id, "4242424242424242")

        deadline = time.monotonic() + 15
        while True:  # other tests' payments may send events too
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no webhook for the payment arrived"
            _, path, headers, body = await asyncio.to_thread(receiver.requests.get, True, remaining)
            assert path == "/webhooks/stripe"
            event = provider.parse_webhook(body, headers)
            if event.payment_provider_id == created.provider_id:
                break
        assert event.kind is EventKind.payment_succeeded
        assert event.provider_type == "payment_intent.succeeded"
        assert abs(event.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
        # the handler fetches the payment rather than trusting the event's copy
        assert (await provider.retrieve_payment(created.provider_id)).status is (
            PaymentStatus.succeeded
        )
        tampered = body.replace(b"succeeded", b"canceled")
        with pytest.raises(WebhookRejected) as rejected:
            provider.parse_webhook(tampered, headers)
        assert rejected.value.status_code == 401
