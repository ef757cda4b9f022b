"""Request and response shapes of payments, refunds, settlements, payouts and statements."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from market.errors import Invalid
from market.listings.schemas import Input

PaymentMethod = Literal["bank_transfer", "card", "alipay", "wechat_pay"]
PaymentStatus = Literal["pending", "requires_capture", "succeeded", "cancelled"]
MAX_REFUND_FEN = 10**12  # ten billion yuan: above any order this platform can hold


class PaymentCreate(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"method": "bank_transfer"}, {"method": "card"}]},
    )

    method: PaymentMethod = Field(
        description="bank_transfer (对公转账, always available) or, when Stripe is configured, "
        "card (captured when the cooperative ships), alipay or wechat_pay."
    )


class TransferInstructionsRead(BaseModel):
    account_name: str
    account_number: str
    bank_name: str
    reference_code: str = Field(description="Quote it in the transfer's memo (附言).")
    amount_fen: int
    currency: str


class RefundRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    payment_id: uuid.UUID
    order_id: uuid.UUID
    fulfilment_id: uuid.UUID | None
    dispute_id: uuid.UUID | None
    kind: str
    amount_fen: int
    from_payable: bool
    status: Literal["pending", "succeeded", "failed"]
    reason: str
    last_error: str | None
    created_at: dt.datetime
    succeeded_at: dt.datetime | None
    bank_reference: str | None = Field(
        default=None, description="A bank refund's transfer, as the platform recorded it sent."
    )


class BankRefundRead(BaseModel):
    """A refund of a bank-transfer payment that the platform's bank is to send: back to the
    account the money came from, as the statement showed it (empty when unknown)."""

    refund: RefundRead
    order_ref: str
    payer_name: str
    payer_account: str
    payer_bank: str
    exported_at: dt.datetime | None = Field(
        description="When it went into a batch-transfer file (never twice); null: not yet."
    )


class BankRefundPage(BaseModel):
    items: list[BankRefundRead]
    next_cursor: str | None = None


class BankRefundBounced(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "reason": "户名与账号不符",
                    "account_name": "北京新发地商贸有限公司",
                    "account_number": "6222 0202 0011 2234",
                    "bank_name": "中国工商银行北京丰台支行",
                }
            ]
        },
    )

    reason: str = Field(min_length=1, max_length=300, description="What the bank said.")
    account_name: str | None = Field(default=None, min_length=1, max_length=100)
    account_number: str | None = Field(
        default=None, min_length=4, max_length=40, pattern=r"^[0-9][0-9 \-]*[0-9]$"
    )
    bank_name: str | None = Field(default=None, min_length=1, max_length=100)

    def payee(self) -> tuple[str, str, str] | None:
        """The account to send to instead, when all three are given; None when none is.
        Invalid naming the first missing field when only some are."""
        given = {
            "account_name": self.account_name,
            "account_number": self.account_number,
            "bank_name": self.bank_name,
        }
        if all(v is None for v in given.values()):
            return None
        for name, value in given.items():
            if value is None:
                raise Invalid.field(name, "Give the account name, number and bank together.")
        return (self.account_name or "", self.account_number or "", self.bank_name or "")


class BankRefundSent(Input):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"bank_reference": "BK20261201000123"}]}
    )

    bank_reference: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z\-_/.]+$",
        description="The bank's reference of the transfer that sent the money back.",
    )


class PaymentRead(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    method: PaymentMethod
    provider: str
    status: PaymentStatus
    capture_method: Literal["automatic", "manual"]
    currency: str
    amount_fen: int
    captured_fen: int = Field(description="Money actually received (bank) or captured (card).")
    refunded_fen: int = Field(description="Refunded or being refunded.")
    client_secret: str | None = Field(
        default=None, description="For the buyer's front end to confirm a Stripe payment."
    )
    transfer_instructions: TransferInstructionsRead | None = None
    failure_message: str | None
    created_at: dt.datetime
    authorised_at: dt.datetime | None
    captured_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    refunds: list[RefundRead] = []


class PaymentPage(BaseModel):
    items: list[PaymentRead]
    next_cursor: str | None = None


class RefundCreate(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"amount_fen": 12000, "reason": "运输破损，部分退款", "fulfilment_id": None}
            ]
        },
    )

    amount_fen: int = Field(gt=0, le=MAX_REFUND_FEN, description="Fen; whole numbers only.")
    reason: str = Field(min_length=1, max_length=300)
    fulfilment_id: uuid.UUID | None = Field(
        default=None,
        description="The part refunded; taken from its cooperative's payable when already "
        "settled, else from escrow. Without it, the order's only part, or, for money paid "
        "beyond what the order owes, no part; an order of several cooperatives needs it "
        "(422).",
    )


class PaymentConfirm(Input):
    note: str = Field(min_length=1, max_length=300)


class SettlementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    fulfilment_id: uuid.UUID
    order_id: uuid.UUID
    gross_fen: int = Field(description="Goods, freight and the platform fee share of this part.")
    fee_fen: int
    refunded_before_fen: int
    net_fen: int = Field(description="Owed to the cooperative.")
    settled_at: dt.datetime


class SettlementPage(BaseModel):
    items: list[SettlementRead]
    next_cursor: str | None = None


class BalanceRead(BaseModel):
    cooperative_id: uuid.UUID
    payable_fen: int = Field(
        description="Owed to the cooperative now; negative is a debt (refunds after "
        "settlement) that the next payout nets off."
    )
    awaiting_settlement_fen: int = Field(
        description="Goods and freight shipped or delivered, not yet settled."
    )
    payout_scheduled_fen: int
    paid_out_fen: int


class PayoutAccountWrite(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "account_name": "靖远县枸杞种植专业合作社",
                    "account_number": "6228 4800 1234 5678 901",
                    "bank_name": "中国农业银行靖远县支行",
                }
            ]
        },
    )

    # one cell each of the bank's payout file: no tab or line break (a name pasted from a
    # spreadsheet with one failed the whole batch's file)
    account_name: str = Field(min_length=2, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    account_number: str = Field(pattern=r"^[0-9][0-9 ]{7,38}$")
    bank_name: str = Field(min_length=2, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


class PayoutAccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    account_name: str
    account_number: str
    bank_name: str
    updated_at: dt.datetime


class PayoutRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    batch_id: uuid.UUID
    cooperative_id: uuid.UUID
    amount_fen: int
    account_name: str
    account_number: str
    bank_name: str
    status: Literal["scheduled", "paid"] = "scheduled"
    created_at: dt.datetime


class PayoutPage(BaseModel):
    items: list[PayoutRead]
    next_cursor: str | None = None


class PayoutBatchRead(BaseModel):
    id: uuid.UUID
    status: Literal["scheduled", "paid"]
    currency: str
    total_fen: int
    payout_count: int
    created_at: dt.datetime
    paid_at: dt.datetime | None
    payouts: list[PayoutRead]
    skipped_without_account: list[uuid.UUID] = Field(
        default=[], description="Cooperatives owed money that have no payout account yet."
    )


class StatementImportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    filename: str
    created_at: dt.datetime
    line_count: int
    new_count: int = Field(description="Lines not seen in an earlier import.")
    matched: int
    underpaid: int
    overpaid: int
    unmatched: int


class StatementLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    import_id: uuid.UUID
    line_number: int
    transaction_id: str
    booked_on: dt.date
    amount_fen: int
    currency: str
    memo: str
    payer_name: str
    payer_account: str
    payer_bank: str
    reference_code: str | None
    payment_id: uuid.UUID | None
    outcome: Literal["matched", "underpaid", "overpaid", "unmatched"]
    review: Literal["none", "open", "resolved"]
    resolution: str | None
    resolved_by_id: uuid.UUID | None
    resolved_at: dt.datetime | None


class StatementLinePage(BaseModel):
    items: list[StatementLineRead]
    next_cursor: str | None = None


class StatementLineResolve(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "assign", "reference_code": "NSQ…", "note": "买家电话确认漏填附言"},
                {"action": "confirm", "note": "银行手续费 15 元，平台承担"},
            ]
        },
    )

    action: Literal["assign", "confirm", "dismiss"]
    note: str = Field(min_length=1, max_length=300, description="Why: kept with who decided.")
    reference_code: str | None = Field(default=None, max_length=40)


class LedgerAccountBalance(BaseModel):
    kind: str
    organisation_id: uuid.UUID | None
    provider: str | None
    currency: str
    balance_fen: int = Field(description="Debits minus credits.")


class TrialBalance(BaseModel):
    accounts: list[LedgerAccountBalance]
    total_fen: int = Field(description="Always 0: every transaction balances.")


class WebhookAck(BaseModel):
    received: bool = True
    duplicate: bool = False
