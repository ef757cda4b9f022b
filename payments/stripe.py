"""Stripe PaymentIntents through the official library's StripeClient, with its async calls.

Every Stripe exception is turned into one of payments.base's errors here, so callers never
see the library's own. The tests run against localstripe: requests take the shape it
understands under `localstripe_compat`, and where its answers lack a field Stripe has, the
code reads Stripe's field first and falls back to what localstripe gives (`_amount_captured`,
`list_refunds`)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import stripe

from payments.base import (
    CaptureMethod,
    EventKind,
    Health,
    NotSupported,
    PaymentDeclined,
    PaymentRequest,
    PaymentStatus,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderUnavailable,
    RefundStatus,
    WebhookEvent,
    WebhookRejected,
)

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams

    from payments.base import PaymentProvider

T = TypeVar("T")

# Cards can hold an authorisation and be captured on shipment; Alipay and WeChat Pay take the
# money at once.
_CAPTURE = {"card": CaptureMethod.manual}

_STATUS = {
    "requires_payment_method": PaymentStatus.pending,
    "requires_confirmation": PaymentStatus.pending,
    "requires_action": PaymentStatus.pending,
    "processing": PaymentStatus.pending,
    "requires_capture": PaymentStatus.requires_capture,
    "succeeded": PaymentStatus.succeeded,
    "canceled": PaymentStatus.cancelled,
}

_REFUND_STATUS = {
    "pending": RefundStatus.pending,
    "requires_action": RefundStatus.pending,
    "succeeded": RefundStatus.succeeded,
    "failed": RefundStatus.failed,
    "canceled": RefundStatus.failed,
}

_EVENT_KIND = {
    "payment_intent.amount_capturable_updated": EventKind.payment_authorised,
    "payment_intent.succeeded": EventKind.payment_succeeded,
    "payment_intent.payment_failed": EventKind.payment_failed,
    "payment_intent.canceled": EventKind.payment_cancelled,
    "charge.refunded": EventKind.refund_updated,
    "charge.refund.updated": EventKind.refund_updated,
}

WEBHOOK_TOLERANCE = 300  # seconds: older signed events are refused as possible replays
_EXPAND = ["latest_charge"]  # so that the charge comes with the payment in one call
_METADATA_VALUE_LIMIT = 500  # Stripe's limit on one metadata value


class StripePayments:
    """The PaymentProvider for Stripe: cards (authorised, captured later), Alipay and WeChat
    Pay (captured at once). `method_types` are the payment methods enabled on the account.

    `localstripe_compat` speaks what localstripe (the tests' Stripe) understands. The
    library's API version (2026-10-28) refuses `payment_method_types` and wants
    `allowed_payment_method_types`; localstripe knows only the former, and refuses a
    PaymentIntent `description` (sent in the metadata instead)."""

    name: str = "stripe"
    max_amount: int = 99_999_999  # Stripe's largest charge: eight digits in minor units
    capture_methods: Mapping[str, CaptureMethod]

    def __init__(
        self,
        api_key: str,
        *,
        webhook_secret: str | None = None,
        api_base: str | None = None,
        method_types: tuple[str, ...] = ("card", "alipay", "wechat_pay"),
        localstripe_compat: bool = False,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.localstripe_compat = localstripe_compat
        self.capture_methods = MappingProxyType(
            {method: _CAPTURE.get(method, CaptureMethod.automatic) for method in method_types}
        )
        self._http = stripe.HTTPXClient(allow_sync_methods=True)
        self.client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            max_network_retries=2,
            base_addresses={"api": api_base} if api_base else None,
        )

    # ------------------------------------------------------------ payments

    async def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        """A PaymentIntent that the buyer's front end confirms with `client_secret`."""
        self._check_method_types(request)
        metadata = {**request.metadata, "payment_id": request.reference}
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "capture_method": (
                "manual" if request.capture_method is CaptureMethod.manual else "automatic"
            ),
            "metadata": metadata,
            "expand": _EXPAND,
        }
        if self.localstripe_compat:
            params["payment_method_types"] = list(request.method_types)
            metadata["description"] = request.description[:_METADATA_VALUE_LIMIT]
        else:
            params["allowed_payment_method_types"] = list(request.method_types)
            params["description"] = request.description
        intent = await _call(
            self.client.v1.payment_intents.create_async(
                params=cast("PaymentIntentCreateParams", params),
                options={"idempotency_key": request.idempotency_key},
            )
        )
        return self._payment(intent)

    async def retrieve_payment(self, provider_id: str) -> ProviderPayment:
        intent = await _call(
            self.client.v1.payment_intents.retrieve_async(provider_id, params={"expand": _EXPAND})
        )
        return self._payment(intent)

    async def capture(
        self, provider_id: str, *, amount: int, idempotency_key: str
    ) -> ProviderPayment:
        intent = await _call(
            self.client.v1.payment_intents.capture_async(
                provider_id,
                params={"amount_to_capture": amount, "expand": _EXPAND},
                options={"idempotency_key": idempotency_key},
            )
        )
        return self._payment(intent)

    async def cancel(self, provider_id: str, *, idempotency_key: str) -> ProviderPayment:
        intent = await _call(
            self.client.v1.payment_intents.cancel_async(
                provider_id,
                params={"expand": _EXPAND},
                options={"idempotency_key": idempotency_key},
            )
        )
        return self._payment(intent)

    # ------------------------------------------------------------ refunds

    async def refund(
        self,
        provider_id: str,
        *,
        amount: int,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> ProviderRefund:
        refund = await _call(
            self.client.v1.refunds.create_async(
                params={
                    "payment_intent": provider_id,
                    "amount": amount,
                    "metadata": dict(metadata),
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return self._refund(refund.to_dict(), provider_id)

    async def list_refunds(self, provider_id: str) -> list[ProviderRefund]:
        """Every refund made through this payment, newest first, across all pages.

        Refunds that name no payment intent are left out: localstripe books the released
        remainder of a partial capture as such a refund on the charge (Stripe does not), and
        every refund made through `refund` names its payment intent."""

        async def collect() -> list[ProviderRefund]:
            page = await self.client.v1.refunds.list_async(
                params={"payment_intent": provider_id, "limit": 100}
            )
            refunds: list[ProviderRefund] = []
            async for refund in page.auto_paging_iter():
                data = refund.to_dict()
                if data.get("payment_intent") == provider_id:
                    refunds.append(self._refund(data, provider_id))
            return refunds

        return await _call(collect())

    # ------------------------------------------------------------ webhooks

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the Stripe-Signature header with the official library, then parse.

        A missing header, a malformed header or body, or a timestamp older than five minutes
        is a 400; a signature that does not match is a 401. The timestamp is checked
        separately (the library reports it as a signature failure too)."""
        if not self.webhook_secret:
            raise WebhookRejected(
                "Stripe webhooks are not set up here: no webhook signing secret is configured.",
                status_code=400,
            )
        header = next(
            (value for key, value in headers.items() if key.lower() == "stripe-signature"), None
        )
        if not header:
            raise WebhookRejected("The Stripe-Signature header is missing.", status_code=400)
        timestamp = _signature_timestamp(header)
        if timestamp is None:
            raise WebhookRejected("The Stripe-Signature header is malformed.", status_code=400)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected("The webhook body is not UTF-8 text.", status_code=400) from None
        try:
            stripe.WebhookSignature.verify_header(text, header, self.webhook_secret, None)
        except stripe.SignatureVerificationError:
            raise WebhookRejected(
                "The webhook signature does not match.", status_code=401
            ) from None
        if timestamp < time.time() - WEBHOOK_TOLERANCE:
            raise WebhookRejected(
                "The webhook is too old (signed more than five minutes ago).", status_code=400
            )
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            raise WebhookRejected("The webhook body is not JSON.", status_code=400) from None
        return _webhook_event(event)

    # ------------------------------------------------------------ service

    async def health(self) -> Health:
        try:
            await self.client.v1.customers.list_async(params={"limit": 1})
        except Exception as exc:
            return Health(ok=False, provider=self.name, detail=f"Stripe unreachable: {exc}")
        return Health(ok=True, provider=self.name)

    async def close(self) -> None:
        await self._http.close_async()
        self._http.close()

    # ------------------------------------------------------------ mapping

    def _check_method_types(self, request: PaymentRequest) -> None:
        methods = list(request.method_types)
        if not methods:
            raise NotSupported("No payment method was asked for.", code="invalid_method")
        disabled = [method for method in methods if method not in self.capture_methods]
        if disabled:
            raise NotSupported(
                f"Payment by {', '.join(disabled)} is not enabled.", code="method_not_enabled"
            )
        if request.capture_method is CaptureMethod.manual:
            immediate = [
                method
                for method in methods
                if self.capture_methods[method] is CaptureMethod.automatic
            ]
            if immediate:
                raise NotSupported(
                    f"{', '.join(immediate)} cannot hold a payment to capture later.",
                    code="manual_capture_not_supported",
                )

    def _payment(self, intent: stripe.PaymentIntent) -> ProviderPayment:
        data = intent.to_dict()
        status = _STATUS.get(str(data.get("status")), PaymentStatus.pending)
        error = data.get("last_payment_error") or {}
        capturable = data.get("amount_capturable")
        if not isinstance(capturable, int):  # localstripe omits it
            capturable = int(data["amount"]) if status is PaymentStatus.requires_capture else 0
        return ProviderPayment(
            provider=self.name,
            provider_id=str(data["id"]),
            status=status,
            amount=int(data["amount"]),
            amount_capturable=capturable,
            amount_captured=_amount_captured(data),
            currency=str(data["currency"]).upper(),
            capture_method=(
                CaptureMethod.manual
                if data.get("capture_method") == "manual"
                else CaptureMethod.automatic
            ),
            client_secret=data.get("client_secret"),
            failure_message=error.get("message") if isinstance(error, dict) else None,
            metadata=_strings(data.get("metadata")),
        )

    def _refund(self, data: dict[str, Any], provider_id: str) -> ProviderRefund:
        failure = data.get("failure_reason")
        return ProviderRefund(
            provider=self.name,
            provider_id=str(data["id"]),
            payment_provider_id=str(data.get("payment_intent") or provider_id),
            amount=int(data["amount"]),
            currency=str(data["currency"]).upper(),
            status=_REFUND_STATUS.get(str(data.get("status")), RefundStatus.pending),
            metadata=_strings(data.get("metadata")),
            failure_message=f"The refund failed ({failure})." if failure else None,
        )


def _latest_charge(intent: Mapping[str, Any]) -> Mapping[str, Any] | None:
    charge = intent.get("latest_charge")
    if isinstance(charge, Mapping):
        return charge
    # older API versions (and localstripe) also list the charges on the intent
    charges = intent.get("charges")
    if isinstance(charges, Mapping) and charges.get("data"):
        first = charges["data"][0]
        return first if isinstance(first, Mapping) else None
    return None


def _amount_captured(intent: Mapping[str, Any]) -> int:
    """What has been taken from the buyer, refunds not deducted.

    Stripe says it in `amount_received`; localstripe omits that and the charge's
    `amount_captured`, and books the released remainder of a partial capture as a refund on
    the charge that names no payment intent. So, in that order: amount_received, the charge's
    amount_captured, the charge's amount less those release refunds."""
    received = intent.get("amount_received")
    if isinstance(received, int):
        return received
    charge = _latest_charge(intent)
    if charge is None or charge.get("status") != "succeeded" or not charge.get("captured"):
        return 0
    captured = charge.get("amount_captured")
    if isinstance(captured, int):
        return captured
    refunds = charge.get("refunds")
    listed = refunds.get("data", []) if isinstance(refunds, Mapping) else []
    released = sum(
        int(refund.get("amount", 0))
        for refund in listed
        if isinstance(refund, Mapping) and not refund.get("payment_intent")
    )
    return int(charge.get("amount", 0)) - released


def _strings(metadata: object) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        return {}
    return {str(key): str(value) for key, value in metadata.items()}


def _signature_timestamp(header: str) -> int | None:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _webhook_event(event: object) -> WebhookEvent:
    if not isinstance(event, dict):
        raise WebhookRejected("The webhook body is not a Stripe event.", status_code=400)
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    data = event.get("data")
    subject = data.get("object") if isinstance(data, dict) else None
    if (
        not isinstance(event_id, str)
        or not isinstance(event_type, str)
        or not isinstance(created, int)
        or not isinstance(subject, dict)
    ):
        raise WebhookRejected(
            "The webhook body is not a Stripe event (id, type, created or data.object missing).",
            status_code=400,
        )
    if event_type.startswith("refund."):
        kind = EventKind.refund_updated
    else:
        kind = _EVENT_KIND.get(event_type, EventKind.other)
    if event_type.startswith("payment_intent."):
        payment_id = subject.get("id")
    else:
        payment_id = subject.get("payment_intent")
    return WebhookEvent(
        provider="stripe",
        event_id=event_id,
        kind=kind,
        provider_type=event_type,
        created_at=dt.datetime.fromtimestamp(created, tz=dt.UTC),
        payment_provider_id=payment_id if isinstance(payment_id, str) else None,
        payload=event,
    )


async def _call(operation: Awaitable[T]) -> T:
    """Await a Stripe call, turning the library's exceptions into ours."""
    try:
        return await operation
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def _translate(exc: stripe.StripeError) -> ProviderError:
    message = exc.user_message or ""
    if isinstance(exc, stripe.CardError):
        decline = getattr(exc.error, "decline_code", None) if exc.error else None
        return PaymentDeclined(
            message or "The card was declined.", code=decline or exc.code or "card_declined"
        )
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderUnavailable(
            "Stripe could not be reached; please try again.", code="provider_unreachable"
        )
    if isinstance(exc, stripe.RateLimitError):
        return ProviderUnavailable(
            "Stripe is busy right now; please try again shortly.", code="provider_rate_limited"
        )
    if isinstance(exc, stripe.APIError) and (exc.http_status is None or exc.http_status >= 500):
        return ProviderUnavailable(
            "Stripe had an internal error; please try again.", code="provider_unavailable"
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ProviderError(
            "Stripe refused the platform's credentials; the platform must fix its setup.",
            code="provider_misconfigured",
        )
    if isinstance(exc, stripe.IdempotencyError):
        return ProviderError(
            "The same request key was used for a different request.", code="idempotency_conflict"
        )
    return ProviderError(
        f"Stripe refused the request: {message}" if message else "Stripe refused the request.",
        code=exc.code or "provider_error",
    )


if TYPE_CHECKING:
    _conforms: type[PaymentProvider] = StripePayments
