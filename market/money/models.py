"""Money: payments and refunds at a provider, the webhook inbox, the double-entry ledger,
settlements to cooperatives, payout batches and bank statement imports.

Amounts are integers in fen. The ledger is append-only and the database itself refuses a
transaction whose entries do not balance (a deferred constraint trigger, migration 0012)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

PAYMENT_STATUSES = ("pending", "requires_capture", "succeeded", "cancelled")
PAYMENT_METHODS = ("bank_transfer", "card", "alipay", "wechat_pay")
REFUND_KINDS = (
    "dispute",  # a platform decision on a dispute
    "cancellation",  # a paid order cancelled before shipment
    "declined_part",  # a cooperative could not supply its part after the money was taken
    "overpayment",  # a bank transfer of more than the order
    "late_payment",  # money that arrived after the order expired
    "manual",  # a platform user's refund
    "provider",  # made at the provider outside this system (dashboard), recorded when seen
    "replaced_payment",  # money taken by a payment the buyer had replaced by another
)
REFUND_STATUSES = ("pending", "succeeded", "failed")
ACCOUNT_KINDS = (
    "provider_clearing",  # money at the bank or the payment provider (asset)
    "buyer_escrow",  # money held for buyers until delivery (liability)
    "cooperative_payable",  # what the platform owes a cooperative; a debit balance is its debt
    "platform_fee_revenue",
    "refunds_payable",  # refunds decided, not yet paid out by the provider
    "payouts_in_transit",  # payouts in a batch, not yet confirmed paid by the bank
    "platform_adjustments",  # shortfalls the platform accepted (e.g. bank charges)
)
STATEMENT_OUTCOMES = ("matched", "underpaid", "overpaid", "unmatched")
REVIEW_STATUSES = ("none", "open", "resolved")


class Payment(IdMixin, CreatedAtMixin, Base):
    """One attempt to collect an order's total through one provider. At most one live payment
    per order; its status only moves forward. `refunded_fen` counts pending and succeeded
    refunds, and the database refuses more than was captured."""

    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint(f"status IN {PAYMENT_STATUSES!r}", name="status"),
        CheckConstraint(f"method IN {PAYMENT_METHODS!r}", name="method"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("captured_fen >= 0 AND refunded_fen >= 0", name="not_negative"),
        CheckConstraint("refunded_fen <= captured_fen", name="refunds_within_captured"),
        Index(
            "uq_payment_live_order",
            "order_id",
            unique=True,
            postgresql_where=text("status <> 'cancelled'"),
        ),
        Index("uq_payment_provider_id", "provider", "provider_payment_id", unique=True),
        Index("uq_payment_reference_code", "reference_code", unique=True),
        Index(
            "ix_payment_open",
            "updated_at",
            postgresql_where=text("status IN ('pending', 'requires_capture')"),
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.id", ondelete="RESTRICT"))
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="RESTRICT"))
    provider: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    capture_method: Mapped[str] = mapped_column(String(10))
    provider_payment_id: Mapped[str | None] = mapped_column(String(100))
    reference_code: Mapped[str | None] = mapped_column(
        String(24), doc="What the buyer quotes on a bank transfer."
    )
    currency: Mapped[str] = mapped_column(String(3), server_default="CNY")
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    captured_fen: Mapped[int] = mapped_column(BigInteger, server_default="0")
    refunded_fen: Mapped[int] = mapped_column(BigInteger, server_default="0")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    client_secret: Mapped[str | None] = mapped_column(Text)
    failure_message: Mapped[str | None] = mapped_column(Text)
    authorised_at: Mapped[dt.datetime | None]
    captured_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    confirmed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id"), doc="A platform user who confirmed it by hand."
    )
    confirmation_note: Mapped[str | None] = mapped_column(Text)
    synced_at: Mapped[dt.datetime | None] = mapped_column(
        doc="When the provider's copy was last fetched (reconciliation)."
    )
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class Refund(IdMixin, CreatedAtMixin, Base):
    """Money going back to the buyer. Recorded (and held in the ledger) before the provider
    is called, so that a lost response is found again by its id instead of refunded twice."""

    __tablename__ = "refund"
    __table_args__ = (
        CheckConstraint(f"kind IN {REFUND_KINDS!r}", name="kind"),
        CheckConstraint(f"status IN {REFUND_STATUSES!r}", name="status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("ix_refund_payment", "payment_id"),
        Index("uq_refund_dispute", "dispute_id", unique=True),
        Index(
            "uq_refund_declined_part",
            "fulfilment_id",
            unique=True,
            postgresql_where=text("kind = 'declined_part'"),
        ),
        Index("ix_refund_pending", "updated_at", postgresql_where=text("status = 'pending'")),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment.id", ondelete="RESTRICT"))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.id", ondelete="RESTRICT"))
    fulfilment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("fulfilment.id", ondelete="RESTRICT")
    )
    dispute_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dispute.id", ondelete="RESTRICT")
    )
    kind: Mapped[str] = mapped_column(String(16))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    from_payable: Mapped[bool] = mapped_column(
        doc="Taken from the cooperative's payable (its part was already settled), else escrow."
    )
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    provider_refund_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    attempts: Mapped[int] = mapped_column(server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    succeeded_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    # a bank refund (offline payments): when it went into the bank's batch-transfer file
    # (once), the platform user who recorded it sent, and the bank's reference of the transfer
    exported_at: Mapped[dt.datetime | None]
    # where a bank refund goes when the statement's payer account is not the one (given by a
    # platform user after the bank sent a transfer back)
    payee_name: Mapped[str | None] = mapped_column(Text)
    payee_account: Mapped[str | None] = mapped_column(Text)
    payee_bank: Mapped[str | None] = mapped_column(Text)
    sent_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    bank_reference: Mapped[str | None] = mapped_column(String(64))


class WebhookEvent(IdMixin, Base):
    """The inbox: every verified webhook, stored before it is handled, once per event id."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        Index("uq_webhook_event_provider_event", "provider", "event_id", unique=True),
        Index(
            "ix_webhook_event_unhandled", "received_at", postgresql_where=text("handled_at IS NULL")
        ),
    )

    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(100))
    provider_type: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(24))
    payment_provider_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    event_created_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    handled_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    outcome: Mapped[str | None] = mapped_column(Text)


class LedgerAccount(IdMixin, CreatedAtMixin, Base):
    """One currency per account; one account per (kind, organisation, provider, currency)."""

    __tablename__ = "ledger_account"
    __table_args__ = (
        CheckConstraint(f"kind IN {ACCOUNT_KINDS!r}", name="kind"),
        CheckConstraint(
            "(kind = 'cooperative_payable') = (organisation_id IS NOT NULL)", name="owner"
        ),
        CheckConstraint("(kind = 'provider_clearing') = (provider IS NOT NULL)", name="provider"),
        Index(
            "uq_ledger_account_identity",
            "kind",
            text("coalesce(organisation_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            text("coalesce(provider, '')"),
            "currency",
            unique=True,
        ),
    )

    kind: Mapped[str] = mapped_column(String(24))
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    provider: Mapped[str | None] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))


class LedgerTransaction(IdMixin, CreatedAtMixin, Base):
    """One balanced movement of money, linked to what caused it. `dedupe_key` makes every
    posting idempotent: the same receipt, settlement or refund is never posted twice."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (
        Index("uq_ledger_transaction_dedupe", "dedupe_key", unique=True),
        Index("ix_ledger_transaction_order", "order_id"),
        Index("ix_ledger_transaction_fulfilment", "fulfilment_id"),
    )

    kind: Mapped[str] = mapped_column(String(24))
    dedupe_key: Mapped[str] = mapped_column(String(160))
    memo: Mapped[str] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("order.id"))
    fulfilment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("fulfilment.id"))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment.id"))
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refund.id"))
    payout_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payout.id"))


class LedgerEntry(Base):
    """Debits are positive, credits negative; the entries of a transaction sum to zero."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="amount_not_zero"),
        Index("ix_ledger_entry_account", "account_id"),
        Index("ix_ledger_entry_transaction", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transaction.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_account.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class Settlement(IdMixin, Base):
    """A delivered fulfilment's money moved from escrow to its cooperative, once."""

    __tablename__ = "settlement"
    __table_args__ = (
        Index("uq_settlement_fulfilment", "fulfilment_id", unique=True),
        Index("ix_settlement_cooperative", "cooperative_id", "settled_at"),
        CheckConstraint("gross_fen = net_fen + fee_fen + refunded_before_fen", name="adds_up"),
        CheckConstraint("net_fen >= 0 AND fee_fen >= 0", name="not_negative"),
    )

    fulfilment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("fulfilment.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.id"))
    cooperative_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    gross_fen: Mapped[int] = mapped_column(BigInteger, doc="Goods, freight and the fee share.")
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_before_fen: Mapped[int] = mapped_column(BigInteger)
    net_fen: Mapped[int] = mapped_column(BigInteger, doc="What the cooperative is owed.")
    settled_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class PayoutAccount(Base):
    """Where a cooperative's payouts go."""

    __tablename__ = "payout_account"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True
    )
    account_name: Mapped[str] = mapped_column(String(100))
    account_number: Mapped[str] = mapped_column(String(40))
    bank_name: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class PayoutBatch(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "payout_batch"
    __table_args__ = (CheckConstraint("status IN ('scheduled', 'paid')", name="status"),)

    status: Mapped[str] = mapped_column(String(10), server_default="scheduled")
    currency: Mapped[str] = mapped_column(String(3), server_default="CNY")
    total_fen: Mapped[int] = mapped_column(BigInteger)
    payout_count: Mapped[int]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    paid_at: Mapped[dt.datetime | None]
    paid_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))


class Payout(IdMixin, CreatedAtMixin, Base):
    """One cooperative's payout in a batch: its payable balance when the batch was built
    (settlements net of fees, less refunds after settlement and earlier payouts)."""

    __tablename__ = "payout"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("uq_payout_batch_cooperative", "batch_id", "cooperative_id", unique=True),
        Index("ix_payout_cooperative", "cooperative_id"),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payout_batch.id", ondelete="CASCADE"))
    cooperative_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    account_name: Mapped[str] = mapped_column(String(100))
    account_number: Mapped[str] = mapped_column(String(40))
    bank_name: Mapped[str] = mapped_column(String(100))


class StatementImport(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "statement_import"

    filename: Mapped[str] = mapped_column(String(200))
    imported_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    line_count: Mapped[int] = mapped_column(server_default="0")
    new_count: Mapped[int] = mapped_column(server_default="0")
    matched: Mapped[int] = mapped_column(server_default="0")
    underpaid: Mapped[int] = mapped_column(server_default="0")
    overpaid: Mapped[int] = mapped_column(server_default="0")
    unmatched: Mapped[int] = mapped_column(server_default="0")


class StatementLine(IdMixin, Base):
    """A credit on the platform's bank account. The bank's transaction id is unique, so a
    re-imported statement changes nothing."""

    __tablename__ = "statement_line"
    __table_args__ = (
        CheckConstraint(f"outcome IN {STATEMENT_OUTCOMES!r}", name="outcome"),
        CheckConstraint(f"review IN {REVIEW_STATUSES!r}", name="review"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("uq_statement_line_transaction", "transaction_id", unique=True),
        Index("ix_statement_line_review", "booked_on", postgresql_where=text("review = 'open'")),
        Index("ix_statement_line_payment", "payment_id"),
    )

    import_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("statement_import.id"))
    line_number: Mapped[int]
    transaction_id: Mapped[str] = mapped_column(String(64))
    booked_on: Mapped[dt.date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    memo: Mapped[str] = mapped_column(Text)
    payer_name: Mapped[str] = mapped_column(Text)
    payer_account: Mapped[str] = mapped_column(Text)
    payer_bank: Mapped[str] = mapped_column(Text, server_default="")
    reference_code: Mapped[str | None] = mapped_column(String(24))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment.id"))
    outcome: Mapped[str] = mapped_column(String(10))
    review: Mapped[str] = mapped_column(String(10), server_default="none")
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[dt.datetime | None]
