"""Stripe PaymentIntents through the official library's StripeClient."""

from __future__ import annotations

import stripe

from payments.base import Health


class StripePayments:
    name = "stripe"

    def __init__(self, api_key: str, *, api_base: str | None = None) -> None:
        kwargs = {}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self.client = stripe.StripeClient(
            api_key,
            http_client=stripe.HTTPXClient(allow_sync_methods=True),
            max_network_retries=2,
            **kwargs,  # type: ignore[arg-type]
        )

    async def health(self) -> Health:
        try:
            await self.client.v1.customers.list_async(params={"limit": 1})
        except Exception as exc:
            return Health(ok=False, provider=self.name, detail=f"Stripe unreachable: {exc}")
        return Health(ok=True, provider=self.name)

    async def close(self) -> None:
        return None
