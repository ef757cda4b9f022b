"""Offline bank transfer (对公转账), the default provider: the buyer transfers to the platform's
account quoting a reference code, and the platform matches bank statement lines to payments.

There is no API to call: payments are confirmed by importing the bank's statement
(`read_statement`), and payouts and refunds go out as a file uploaded to the bank
(`write_payout_file`)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import TYPE_CHECKING, TextIO

from payments.base import (
    CaptureMethod,
    Health,
    NotSupported,
    PaymentRequest,
    PaymentStatus,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    RefundStatus,
    TransferInstructions,
    WebhookEvent,
    WebhookRejected,
)

if TYPE_CHECKING:
    from payments.base import PaymentProvider

# ---------------------------------------------------------------- reference codes

# Crockford's base 32: no I, L, O or U, so a code read aloud or copied by hand stays unambiguous.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "NSQ"  # 农商桥
BODY_LENGTH = 10  # 50 bits of a hash of the payment id
CHECK_LENGTH = 2
CODE_LENGTH = len(PREFIX) + BODY_LENGTH + CHECK_LENGTH

_ALPHABET_SET = frozenset(ALPHABET)
# Crockford's digits as the digits Python's int(..., 32) reads.
_AS_BASE32 = str.maketrans(ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")
# What people type instead (Crockford's decoding rules), read as the digit they stand for.
_LOOK_ALIKES = str.maketrans("OIL", "011")
# Separators people put inside a code: spaces, hyphens and dashes, underscores.
_SEPARATOR = r"[\s\-_\u2010-\u2015\u2212]"
_CODE_CHAR = "[0-9A-TV-Z]"  # the alphabet and its look-alikes: every letter but U
_CODE_PATTERN = (
    f"{_SEPARATOR}*".join(PREFIX) + f"(?:{_SEPARATOR}*{_CODE_CHAR}){{{BODY_LENGTH + CHECK_LENGTH}}}"
)
# A lookahead, so that candidates may overlap: a wrong code must not hide a right one.
_CANDIDATES = re.compile(f"(?=({_CODE_PATTERN}))")
_WHOLE_CODE = re.compile(f"{_SEPARATOR}*{_CODE_PATTERN}{_SEPARATOR}*")
_SEPARATORS = re.compile(_SEPARATOR)


def _check_value(body: str) -> int:
    """ISO 7064 MOD 97-10 in radix 32: the code read as one base-32 number, check characters
    included, leaves 1 modulo 97. As 97 is prime and larger than 32, every single-character
    substitution and every swap of two adjacent characters changes that remainder."""
    number = int(body.translate(_AS_BASE32), 32)
    return 98 - (number * 32 * 32) % 97


def _encode_check(value: int) -> str:
    return ALPHABET[value // 32] + ALPHABET[value % 32]


def reference_code(payment_id: uuid.UUID) -> str:
    """The code a buyer quotes in the transfer memo, e.g. NSQ1TNBC4E93G1J; the same payment
    always gets the same code, so it can be shown again without being stored. 50 bits of a
    hash are short enough to type but not unique by construction (about one chance in 2,000
    of any clash among a million payments): store it under a unique index."""
    digest = hashlib.sha256(b"agribridge-transfer-reference:" + payment_id.bytes).digest()
    bits = int.from_bytes(digest[:8], "big") >> (64 - 5 * BODY_LENGTH)
    body = "".join(ALPHABET[(bits >> (5 * (BODY_LENGTH - 1 - i))) & 31] for i in range(BODY_LENGTH))
    return PREFIX + body + _encode_check(_check_value(body))


def _is_valid_canonical(code: str) -> bool:
    if len(code) != CODE_LENGTH or not code.startswith(PREFIX):
        return False
    rest = code[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(rest):
        return False
    return rest[-CHECK_LENGTH:] == _encode_check(_check_value(rest[:-CHECK_LENGTH]))


def _normalise(text: str) -> str:
    # NFKC turns full-width letters and digits typed with a Chinese input method into ASCII.
    return unicodedata.normalize("NFKC", text).upper()


def _canonical(spelled: str) -> str:
    return _SEPARATORS.sub("", spelled).translate(_LOOK_ALIKES)


def is_valid_reference(code: str) -> bool:
    """Whether `code` is one whole reference code with a correct checksum. Case, spaces and
    hyphens inside it, and Crockford's look-alikes (O for 0, I or L for 1) are tolerated."""
    text = _normalise(code)
    return _WHOLE_CODE.fullmatch(text) is not None and _is_valid_canonical(_canonical(text))


def find_reference(memo: str) -> str | None:
    """The first valid reference code anywhere in a free-text transfer memo, in canonical form
    (e.g. "货款 nsq-1tnb-c4e9-3g1j 谢谢" → "NSQ1TNBC4E93G1J"); None when there is none. A code
    whose checksum does not match is not found, so a mistyped code is never matched to
    someone else's payment."""
    for match in _CANDIDATES.finditer(_normalise(memo)):
        candidate = _canonical(match.group(1))
        if _is_valid_canonical(candidate):
            return candidate
    return None


# ---------------------------------------------------------------- the provider


@dataclass(frozen=True)
class BankAccount:
    account_name: str
    account_number: str
    bank_name: str


class OfflineBankTransfer:
    """The PaymentProvider for bank transfers. It keeps no state: a payment is identified by
    its reference code, and its arrival is learnt from the bank statement, not from this
    class. `retrieve_payment` and `capture` therefore raise NotSupported."""

    name: str = "offline"
    max_amount: int = 10**12  # fen; company transfers have no practical upper limit
    capture_methods: Mapping[str, CaptureMethod] = MappingProxyType(
        {"bank_transfer": CaptureMethod.automatic}
    )

    def __init__(self, account: BankAccount) -> None:
        self.account = account

    async def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        """Instructions for the buyer; nothing is sent anywhere. `method_types` and
        `capture_method` are not checked: a transfer is one method, captured on arrival."""
        if request.amount <= 0:
            raise ProviderError("The amount to pay must be positive.", code="invalid_amount")
        try:
            payment_id = uuid.UUID(request.reference)
        except ValueError:
            raise ProviderError(
                "The payment reference must be our payment id (a UUID).",
                code="invalid_reference",
            ) from None
        code = reference_code(payment_id)
        currency = request.currency.upper()
        return ProviderPayment(
            provider=self.name,
            provider_id=code,
            status=PaymentStatus.pending,
            amount=request.amount,
            amount_capturable=0,
            amount_captured=0,
            currency=currency,
            capture_method=CaptureMethod.automatic,
            instructions=TransferInstructions(
                account_name=self.account.account_name,
                account_number=self.account.account_number,
                bank_name=self.account.bank_name,
                reference_code=code,
                amount=request.amount,
                currency=currency,
            ),
            metadata={**request.metadata, "payment_id": request.reference},
        )

    async def retrieve_payment(self, provider_id: str) -> ProviderPayment:
        raise NotSupported(
            "A bank transfer cannot be looked up: the bank has no API. Import the bank "
            "statement to see whether it has arrived.",
            code="not_supported",
        )

    async def capture(
        self, provider_id: str, *, amount: int, idempotency_key: str
    ) -> ProviderPayment:
        raise NotSupported(
            "A bank transfer is captured when it arrives; there is nothing to capture later.",
            code="not_supported",
        )

    async def cancel(self, provider_id: str, *, idempotency_key: str) -> ProviderPayment:
        """Nothing to void at the bank. The answer carries no amount (this class keeps none;
        the caller's record has it). A transfer that still arrives for a cancelled payment
        shows up in the statement and has to be refunded."""
        self._check_code(provider_id)
        return ProviderPayment(
            provider=self.name,
            provider_id=provider_id,
            status=PaymentStatus.cancelled,
            amount=0,
            amount_capturable=0,
            amount_captured=0,
            currency="CNY",
            capture_method=CaptureMethod.automatic,
        )

    async def refund(
        self,
        provider_id: str,
        *,
        amount: int,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> ProviderRefund:
        """Accepts the refund, pending: the platform's bank sends the money back (a transfer
        to the account it came from, in a batch-transfer file), and a platform user records
        it sent. The refund id is derived from the idempotency key, so a retry gives the same
        id."""
        self._check_code(provider_id)
        if amount <= 0:
            raise ProviderError("The amount to refund must be positive.", code="invalid_amount")
        return ProviderRefund(
            provider=self.name,
            provider_id="bank-refund-" + idempotency_key,
            payment_provider_id=provider_id,
            amount=amount,
            currency="CNY",
            status=RefundStatus.pending,
            metadata=dict(metadata),
        )

    async def list_refunds(self, provider_id: str) -> list[ProviderRefund]:
        """Always empty: bank refunds are only known from our own records."""
        return []

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise WebhookRejected("Bank transfers have no webhooks.", status_code=404)

    async def health(self) -> Health:
        return Health(ok=True, provider=self.name, detail=f"transfers to {self.account.bank_name}")

    async def close(self) -> None:
        return None

    @staticmethod
    def _check_code(provider_id: str) -> None:
        if not _is_valid_canonical(provider_id):
            raise ProviderError(
                f"{provider_id!r} is not a bank transfer reference code.", code="invalid_reference"
            )


# ---------------------------------------------------------------- bank statements

DEFAULT_CURRENCY = "CNY"

# Header names accepted for each field, compared after trimming and lower-casing. The first
# listed column found wins where a field has several.
_HEADERS: dict[str, tuple[str, ...]] = {
    "booked_on": ("交易日期", "记账日期", "日期", "date", "booked_on", "transaction_date"),
    "amount": ("金额", "贷方金额", "贷方发生额", "收入金额", "amount", "credit"),
    "transaction_id": ("流水号", "交易流水号", "transaction_id", "transaction id"),
    "payer_name": ("付款人", "付款人名称", "付款户名", "对方户名", "payer_name", "payer"),
    "payer_account": ("付款账号", "付款人账号", "对方账号", "payer_account"),
    "payer_bank": ("付款行", "付款人开户行", "付款银行", "对方开户行", "对方行名", "payer_bank"),
    "currency": ("币种", "currency"),
}
# A statement of the whole account also lists what went out (payouts, bank charges): in a
# debit column of its own, or as a negative amount. Such a line is no buyer's money: skipped.
_DEBIT_HEADERS = ("借方金额", "借方发生额", "支出金额", "debit")
# Every memo-like column is read (banks often have both 摘要 and 附言) and joined.
_MEMO_HEADERS = ("附言", "用途", "备注", "摘要", "memo", "remark")
_REQUIRED = ("booked_on", "amount", "transaction_id")
_LABELS = {"booked_on": "date", "amount": "amount", "transaction_id": "transaction id"}

_CURRENCY_NAMES = {"人民币": "CNY", "RMB": "CNY", "CNY": "CNY"}
_DATE = re.compile(
    r"(?P<y>\d{4})(?:[-/.年](?P<m1>\d{1,2})[-/.月](?P<d1>\d{1,2})日?|(?P<m2>\d{2})(?P<d2>\d{2}))"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?"
)
_AMOUNT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?")


@dataclass(frozen=True)
class StatementLine:
    """One incoming transfer from the bank statement; amount in fen."""

    line_number: int
    transaction_id: str  # the bank's own unique id of the line: import each once
    booked_on: dt.date
    amount: int
    currency: str
    memo: str
    payer_name: str
    payer_account: str
    reference_code: str | None  # found in the memo; None when the buyer quoted none
    payer_bank: str = ""  # the payer's bank, when the statement has the column


@dataclass(frozen=True)
class StatementError:
    """A line (or the header) that could not be read; `column` is the header's own name."""

    line_number: int
    column: str | None
    message: str


class _BadCell(Exception):
    pass


MAX_TRANSACTION_ID = 64  # as stored
MAX_LINE_FEN = 10**15  # ten trillion yuan: beyond any transfer, well inside a bigint


def _outgoing(credit: str, debit: str) -> bool:
    """Whether a line is money going out: a negative amount, or an empty (or zero) credit
    beside a debit."""
    amount = unicodedata.normalize("NFKC", credit).strip().lstrip("¥").strip()
    if amount.startswith("-") and _AMOUNT.fullmatch(amount.removesuffix("元").strip()):
        return True
    spent = unicodedata.normalize("NFKC", debit).strip().lstrip("¥").removesuffix("元").strip()
    nothing_in = amount.strip("0.,") == "" if amount else True
    return bool(spent) and spent.strip("0.,") != "" and nothing_in


def _parse_amount(text: str) -> int:
    cleaned = unicodedata.normalize("NFKC", text).strip().lstrip("¥").strip()
    cleaned = cleaned.removesuffix("元").strip()
    if not cleaned:
        raise _BadCell("is empty")
    if not _AMOUNT.fullmatch(cleaned):
        raise _BadCell(f"{text!r} is not an amount in yuan")
    if cleaned.startswith("-"):
        raise _BadCell(f"{text!r} is negative: only incoming transfers can be imported")
    whole, _, fraction = cleaned.lstrip("+").partition(".")
    if len(fraction) > 2:
        raise _BadCell(f"{text!r} has more than 2 decimals")
    try:
        yuan = Decimal(whole.replace(",", "") + "." + (fraction or "0"))
    except InvalidOperation:
        raise _BadCell(f"{text!r} is not an amount in yuan") from None
    fen = int(yuan * 100)
    if fen == 0:
        raise _BadCell(f"{text!r} is zero")
    if fen > MAX_LINE_FEN:
        raise _BadCell(f"{text!r} is more than a statement line can be")
    return fen


def _parse_date(text: str) -> dt.date:
    cleaned = unicodedata.normalize("NFKC", text).strip()
    if not cleaned:
        raise _BadCell("is empty")
    match = _DATE.fullmatch(cleaned)
    if match is None:
        raise _BadCell(f"{text!r} is not a date (expected e.g. 2024-05-01 or 20240501)")
    month = match["m1"] or match["m2"]
    day = match["d1"] or match["d2"]
    try:
        return dt.date(int(match["y"]), int(month), int(day))
    except ValueError:
        raise _BadCell(f"{text!r} is not a real date") from None


def _parse_currency(text: str) -> str:
    cleaned = unicodedata.normalize("NFKC", text).strip().upper()
    if not cleaned:
        return DEFAULT_CURRENCY
    if cleaned in _CURRENCY_NAMES:
        return _CURRENCY_NAMES[cleaned]
    if len(cleaned) == 3 and cleaned.isascii() and cleaned.isalpha():
        return cleaned
    raise _BadCell(f"{text!r} is not a currency code")


def read_statement(lines: Iterable[str]) -> Iterator[StatementLine | StatementError]:
    """Read a bank statement CSV lazily, one line at a time (O(1) memory, whatever the size).

    `lines` is already-decoded text (decoding GBK is the caller's job), e.g. a file opened
    with newline="". Columns are found by their header, Chinese or English; a UTF-8 BOM is
    ignored and blank lines are skipped. Nothing raises for bad content: every problem is
    yielded as a StatementError naming the line and the column (one per bad cell), and reading
    goes on. A header lacking a required column yields one error per missing column and
    nothing else. Duplicate transaction ids are not detected here (that would hold every id
    in memory): the importer keys lines on the bank's transaction id."""
    reader = csv.reader(iter(lines))
    header: list[str] | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        header = [cell.strip().lstrip("\ufeff").strip() for cell in row]
        break
    if header is None:
        yield StatementError(line_number=1, column=None, message="The statement is empty.")
        return

    header_line = reader.line_num
    columns: dict[str, int] = {}
    lowered = [name.lower() for name in header]
    for field, names in _HEADERS.items():
        for name in names:
            if name in lowered:
                columns[field] = lowered.index(name)
                break
    debit = next((lowered.index(name) for name in _DEBIT_HEADERS if name in lowered), None)
    if debit is not None:
        columns["debit"] = debit
    memo_columns = [lowered.index(name) for name in _MEMO_HEADERS if name in lowered]
    missing = [field for field in _REQUIRED if field not in columns]
    if missing:
        for field in missing:
            names = _HEADERS[field]
            yield StatementError(
                line_number=header_line,
                column=names[0],
                message=f"The header has no {_LABELS[field]} column "
                f"(accepted names: {', '.join(names)}).",
            )
        return

    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        yield from _read_row(row, reader.line_num, header, columns, memo_columns)


def _read_row(
    row: list[str],
    line_number: int,
    header: list[str],
    columns: dict[str, int],
    memo_columns: list[int],
) -> Iterator[StatementLine | StatementError]:
    """The line, or one error for each of its bad cells."""
    if len(row) > len(header) and any(cell.strip() for cell in row[len(header) :]):
        yield StatementError(
            line_number=line_number,
            column=None,
            message=f"The line has {len(row)} fields but the header has {len(header)}.",
        )
        return

    def cell(field: str) -> str:
        index = columns.get(field)
        if index is None or index >= len(row):
            return ""
        return row[index].strip()

    if _outgoing(cell("amount"), cell("debit")):
        return  # money that left the account: not a transfer to match

    errors: list[StatementError] = []

    def report(field: str, bad: _BadCell) -> None:
        column = header[columns[field]]
        errors.append(
            StatementError(line_number=line_number, column=column, message=f"{column} {bad}.")
        )

    transaction_id = cell("transaction_id")
    if not transaction_id:
        report("transaction_id", _BadCell("is empty: every line needs the bank's transaction id"))
    elif len(transaction_id) > MAX_TRANSACTION_ID:
        report(
            "transaction_id",
            _BadCell(
                f"is {len(transaction_id)} characters long, more than a bank's transaction id "
                f"({MAX_TRANSACTION_ID}): are the columns shifted?"
            ),
        )
    booked_on = amount = currency = None
    try:
        booked_on = _parse_date(cell("booked_on"))
    except _BadCell as bad:
        report("booked_on", bad)
    try:
        amount = _parse_amount(cell("amount"))
    except _BadCell as bad:
        report("amount", bad)
    try:
        currency = _parse_currency(cell("currency"))
    except _BadCell as bad:
        report("currency", bad)
    if errors or booked_on is None or amount is None or currency is None:
        yield from errors
        return

    memo = " ".join(
        value for value in (row[i].strip() for i in memo_columns if i < len(row)) if value
    )
    yield StatementLine(
        line_number=line_number,
        transaction_id=transaction_id,
        booked_on=booked_on,
        amount=amount,
        currency=currency,
        memo=memo,
        payer_name=cell("payer_name"),
        payer_account=cell("payer_account"),
        reference_code=find_reference(memo) if memo else None,
        payer_bank=cell("payer_bank"),
    )


# ---------------------------------------------------------------- payout files

PAYOUT_HEADER = ("收款户名", "收款账号", "开户行", "金额(元)", "用途/附言", "业务参考号")


@dataclass(frozen=True)
class PayoutRow:
    """One transfer for the bank to make (a payout to a seller or a refund to a buyer)."""

    payout_id: str  # ours; the bank echoes it as 业务参考号, so a re-upload can be spotted
    account_name: str
    account_number: str
    bank_name: str
    amount: int  # fen
    memo: str


def format_yuan(fen: int) -> str:
    """Fen as an exact yuan string: 123450 → "1234.50"."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def write_payout_file(rows: Iterable[PayoutRow], out: TextIO) -> None:
    """Write the bank's batch-transfer CSV (Chinese headers, amounts in exact yuan) to `out`,
    a text stream opened with newline="" (the caller adds a BOM if the bank wants one).
    Rows are written as they come, so a generator of any length is fine. Raises ValueError
    before writing a row whose amount is not positive, whose name, account, bank or
    reference is empty, or whose fields hold a line break or control character."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(PAYOUT_HEADER)
    for number, row in enumerate(rows, start=1):
        if isinstance(row.amount, bool) or not isinstance(row.amount, int) or row.amount <= 0:
            raise ValueError(f"payout {number} ({row.payout_id}): amount must be positive fen")
        named = {
            "收款户名": row.account_name,
            "收款账号": row.account_number,
            "开户行": row.bank_name,
            "用途/附言": row.memo,
            "业务参考号": row.payout_id,
        }
        for name, text in named.items():
            if any(char in text for char in "\r\n\t\0"):
                raise ValueError(
                    f"payout {number} ({row.payout_id}): {name} has a line break "
                    "or a control character"
                )
            if not text.strip() and name != "用途/附言":
                raise ValueError(f"payout {number} ({row.payout_id}): {name} is empty")
        writer.writerow(
            (
                row.account_name,
                row.account_number,
                row.bank_name,
                format_yuan(row.amount),
                row.memo,
                row.payout_id,
            )
        )


if TYPE_CHECKING:
    _conforms: type[PaymentProvider] = OfflineBankTransfer
