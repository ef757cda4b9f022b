"""Verification lifecycle of an organisation: pure, no I/O."""

from __future__ import annotations

from market.errors import Conflict

# event -> {from_status: to_status}
TRANSITIONS: dict[str, dict[str, str]] = {
    "verify": {"pending": "verified", "rejected": "verified"},
    "reject": {"pending": "rejected", "verified": "rejected"},
    "resubmit": {"rejected": "pending"},
}


def transition(status: str, event: str) -> str:
    """The status after `event`, or Conflict naming what is allowed."""
    allowed = TRANSITIONS.get(event, {})
    if status not in allowed:
        raise Conflict(
            f"An organisation that is {status} cannot be {event}ed; "
            f"allowed from: {', '.join(sorted(allowed)) or 'nowhere'}.",
            code="invalid_transition",
        )
    return allowed[status]
