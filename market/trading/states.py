"""Lifecycle of a bid: pure transition table, no I/O.

Negotiation: open → accepted | rejected | countered | withdrawn | expired;
countered → accepted (the buyer takes the counter) | rejected (declined) | expired |
withdrawn. Auction: open → won | partially_won | lost (at the clearing) | withdrawn (before
the close).
"""

from __future__ import annotations

from market.errors import Conflict

TRANSITIONS: dict[str, dict[str, str]] = {
    "accept": {"open": "accepted", "countered": "accepted"},
    "reject": {"open": "rejected", "countered": "rejected"},
    "counter": {"open": "countered", "countered": "countered"},
    "withdraw": {"open": "withdrawn", "countered": "withdrawn"},
    "expire": {"open": "expired", "countered": "expired"},
    "win": {"open": "won"},
    "win_part": {"open": "partially_won"},
    "lose": {"open": "lost"},
}
_PAST = {
    "accept": "accepted",
    "reject": "rejected",
    "counter": "countered",
    "withdraw": "withdrawn",
    "expire": "expired",
    "win": "won",
    "win_part": "partially won",
    "lose": "lost",
}


def transition(status: str, event: str) -> str:
    """The bid's status after `event`, or 409 naming the current status."""
    allowed = TRANSITIONS.get(event, {})
    if status not in allowed:
        raise Conflict(
            f"A bid that is {status.replace('_', ' ')} cannot be {_PAST.get(event, event)}; "
            f"allowed from: {', '.join(sorted(allowed)) or 'nowhere'}.",
            code="invalid_transition",
            current_status=status,
        )
    return allowed[status]
