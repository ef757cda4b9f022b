"""The payment-provider interface and the provider-neutral data it exchanges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Health:
    ok: bool
    provider: str
    detail: str = ""


@runtime_checkable
class PaymentProvider(Protocol):
    name: str

    async def health(self) -> Health:
        """Whether the provider can be reached; never raises."""
        ...

    async def close(self) -> None: ...
