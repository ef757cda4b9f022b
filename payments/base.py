"""The payment-provider interface and the provider-neutral data it exchanges.

Amounts are integers in the currency's minor unit (fen for CNY). Every call that moves money
takes an idempotency key derived from our own ids, so that a retry after a lost response has
the effect of one call. Providers raise the exceptions below, never their library's own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class PaymentStatus(StrEnum):
    """Where a payment stands at the provider. Our own record only ever moves forward along
    pending → requires_capture → succeeded, or to cancelled."""

    pending = "pending"  # waiting for the buyer (transfer not yet seen, card not yet confirmed)
    requires_capture = "requires_capture"  # authorised; captured later (cards, on shipment)
    succeeded = "succeeded"  # the money is secured (captured)
    cancelled = "cancelled"  # voided before capture; nothing was taken


class RefundStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class CaptureMethod(StrEnum):
    automatic = "automatic"
    manual = "manual"


class EventKind(StrEnum):
    """What a webhook says happened, in our words; `other` events are stored and ignored."""

    payment_authorised = "payment_authorised"
    payment_succeeded = "payment_succeeded"
    payment_failed = "payment_failed"
    payment_cancelled = "payment_cancelled"
    refund_updated = "refund_updated"
    other = "other"


# ---------------------------------------------------------------- data in


@dataclass(frozen=True)
class PaymentRequest:
    amount: int
    currency: str
    idempotency_key: str
    reference: str  # our payment id; the provider echoes it back in metadata
    description: str
    method_types: tuple[str, ...] = ("card",)
    capture_method: CaptureMethod = CaptureMethod.automatic
    metadata: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- data out


@dataclass(frozen=True)
class TransferInstructions:
    """What a buyer needs to pay by bank transfer: the account and the reference to quote."""

    account_name: str
    account_number: str
    bank_name: str
    reference_code: str
    amount: int
    currency: str


@dataclass(frozen=True)
class ProviderPayment:
    provider: str
    provider_id: str
    status: PaymentStatus
    amount: int
    amount_capturable: int
    amount_captured: int
    currency: str
    capture_method: CaptureMethod
    client_secret: str | None = None
    instructions: TransferInstructions | None = None
    failure_message: str | None = None  # the last attempt's decline, in the provider's words
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderRefund:
    provider: str
    provider_id: str
    payment_provider_id: str
    amount: int
    currency: str
    status: RefundStatus
    metadata: Mapping[str, str] = field(default_factory=dict)
    failure_message: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook. `payment_provider_id` names the payment it is about (if any); the
    handler fetches the payment for its current state rather than trusting the event's copy,
    so events may arrive in any order."""

    provider: str
    event_id: str
    kind: EventKind
    provider_type: str  # the provider's own event type, e.g. payment_intent.succeeded
    created_at: dt.datetime
    payment_provider_id: str | None
    payload: Mapping[str, object]


# ---------------------------------------------------------------- errors


class ProviderError(Exception):
    """The provider refused or failed; `message` is fit to show a user."""

    def __init__(self, message: str, *, code: str = "provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class PaymentDeclined(ProviderError):
    """The payment method was declined (card declined, insufficient funds…)."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or timed out: safe to retry with the same key."""


class NotSupported(ProviderError):
    """This provider cannot do that (e.g. capture a bank transfer)."""


class WebhookRejected(Exception):
    """A webhook that failed verification; nothing may be written. 400 for a malformed or
    stale request, 401 for a bad signature."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class Health:
    ok: bool
    provider: str
    detail: str = ""


# ---------------------------------------------------------------- the interface


@runtime_checkable
class PaymentProvider(Protocol):
    name: str
    max_amount: int  # the largest single payment the provider accepts, in minor units
    capture_methods: Mapping[str, CaptureMethod]  # payment method type → how it is captured

    async def create_payment(self, request: PaymentRequest) -> ProviderPayment: ...

    async def retrieve_payment(self, provider_id: str) -> ProviderPayment: ...

    async def capture(
        self, provider_id: str, *, amount: int, idempotency_key: str
    ) -> ProviderPayment:
        """Capture `amount` (at most what is authorised); the rest of the authorisation is
        released."""
        ...

    async def cancel(self, provider_id: str, *, idempotency_key: str) -> ProviderPayment: ...

    async def refund(
        self,
        provider_id: str,
        *,
        amount: int,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> ProviderRefund: ...

    async def list_refunds(self, provider_id: str) -> list[ProviderRefund]:
        """Every refund of a payment, so that a refund whose response was lost is found
        (by its metadata) instead of being made again."""
        ...

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify and parse, or raise WebhookRejected."""
        ...

    async def health(self) -> Health:
        """Whether the provider can be reached; never raises."""
        ...

    async def close(self) -> None: ...
