"""Offline bank transfer (对公转账): the buyer transfers with a reference code; the platform
reconciles bank statements. Nothing external to reach."""

from __future__ import annotations

from dataclasses import dataclass

from payments.base import Health


@dataclass(frozen=True)
class BankAccount:
    account_name: str
    account_number: str
    bank_name: str


class OfflineBankTransfer:
    name = "offline"

    def __init__(self, account: BankAccount) -> None:
        self.account = account

    async def health(self) -> Health:
        return Health(ok=True, provider=self.name, detail=f"transfers to {self.account.bank_name}")

    async def close(self) -> None:
        return None
