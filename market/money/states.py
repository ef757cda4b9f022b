"""Lifecycles of payments, refunds and payout batches: pure tables, no I/O.

A payment only moves forward, whatever order the provider's news arrives in:
pending → requires_capture → succeeded; pending or requires_capture → cancelled (nothing
captured). A refund: pending → succeeded or failed, and a bank refund whose transfer the
payer's bank sent back, succeeded → pending again (`service.bank_refund_bounced`, outside this
table). A payout batch: scheduled → paid."""

from __future__ import annotations

from market.errors import Conflict

PAYMENT_RANK = {"pending": 0, "requires_capture": 1, "succeeded": 2, "cancelled": 2}
PAYMENT_FORWARD: dict[str, frozenset[str]] = {
    "pending": frozenset({"requires_capture", "succeeded", "cancelled"}),
    "requires_capture": frozenset({"succeeded", "cancelled"}),
    "succeeded": frozenset(),
    "cancelled": frozenset(),
}
REFUND_FORWARD: dict[str, frozenset[str]] = {
    "pending": frozenset({"succeeded", "failed"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
}
BATCH_FORWARD: dict[str, frozenset[str]] = {"scheduled": frozenset({"paid"}), "paid": frozenset()}


def payment_moves(current: str, seen: str) -> bool:
    """Whether news that a payment is `seen` moves our record (never backwards)."""
    return seen in PAYMENT_FORWARD[current]


def refund_moves(current: str, seen: str) -> bool:
    return seen in REFUND_FORWARD[current]


def batch_transition(current: str, target: str) -> str:
    if target not in BATCH_FORWARD[current]:
        raise Conflict(
            f"A payout batch that is {current} cannot become {target}.",
            code="invalid_transition",
            current_status=current,
        )
    return target
