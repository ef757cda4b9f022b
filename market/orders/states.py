"""Lifecycles of an order and of its fulfilments: pure transition tables, no I/O.

Order: pending_payment → paid → completed (every fulfilment delivered); pending_payment →
expired (not paid in time); pending_payment or paid → cancelled (while nothing has shipped);
paid or completed → disputed → paid (after the platform's decision; then completed at once
when every fulfilment is delivered or cancelled); paid → pending_payment (the card
authorisation that paid it lapsed before anything shipped).
Fulfilment (one per cooperative): pending → packed → shipped → delivered; pending or packed →
cancelled (with its order).
"""

from __future__ import annotations

from market.errors import Conflict

ORDER_TRANSITIONS: dict[str, dict[str, str]] = {
    "pay": {"pending_payment": "paid"},
    "expire": {"pending_payment": "expired"},
    "cancel": {"pending_payment": "cancelled", "paid": "cancelled"},
    "complete": {"paid": "completed"},
    "dispute": {"paid": "disputed", "completed": "disputed"},
    "resolve": {"disputed": "paid"},
    # the authorisation that paid it lapsed before anything shipped: it waits for payment again
    "lapse": {"paid": "pending_payment"},
}
FULFILMENT_TRANSITIONS: dict[str, dict[str, str]] = {
    "pack": {"pending": "packed"},
    "ship": {"pending": "shipped", "packed": "shipped"},
    "deliver": {"shipped": "delivered"},
    "cancel": {"pending": "cancelled", "packed": "cancelled"},
}
DISPUTE_TRANSITIONS: dict[str, dict[str, str]] = {
    "answer": {"open": "answered", "answered": "answered"},
    "decide": {"open": "decided", "answered": "decided"},
}
_PAST = {
    "answer": "answered",
    "decide": "decided",
    "pay": "paid",
    "expire": "expired",
    "cancel": "cancelled",
    "complete": "completed",
    "dispute": "disputed",
    "resolve": "resolved",
    "lapse": "returned to waiting for payment",
    "pack": "packed",
    "ship": "shipped",
    "deliver": "confirmed as delivered",
}


def _transition(table: dict[str, dict[str, str]], thing: str, status: str, event: str) -> str:
    allowed = table.get(event, {})
    if status not in allowed:
        raise Conflict(
            f"{thing} that is {status.replace('_', ' ')} cannot be {_PAST.get(event, event)}; "
            f"allowed from: {', '.join(sorted(allowed)) or 'nowhere'}.",
            code="invalid_transition",
            current_status=status,
        )
    return allowed[status]


def order_transition(status: str, event: str) -> str:
    """The order's status after `event`, or 409 naming the current status."""
    return _transition(ORDER_TRANSITIONS, "An order", status, event)


def fulfilment_transition(status: str, event: str) -> str:
    """The fulfilment's status after `event`, or 409 naming the current status."""
    return _transition(FULFILMENT_TRANSITIONS, "A fulfilment", status, event)


def dispute_transition(status: str, event: str) -> str:
    return _transition(DISPUTE_TRANSITIONS, "A dispute", status, event)
