"""Lifecycle of a listing: pure, no I/O.

draft → active ⇄ paused, active ⇄ sold_out (driven by stock), anything but closed → closed.
"""

from __future__ import annotations

from market.errors import Conflict

# event -> {from_status: to_status}
TRANSITIONS: dict[str, dict[str, str]] = {
    # a cooperative's actions
    "publish": {"draft": "active"},
    "pause": {"active": "paused", "sold_out": "paused"},
    "resume": {"paused": "active"},
    "close": {"draft": "closed", "active": "closed", "paused": "closed", "sold_out": "closed"},
    # automatic, when availability reaches 0 or comes back
    "sell_out": {"active": "sold_out"},
    "restock": {"sold_out": "active"},
}

ACTIONS = ("publish", "pause", "resume", "close")

_PAST = {
    "publish": "published",
    "pause": "paused",
    "resume": "resumed",
    "close": "closed",
    "sell_out": "sold out",
    "restock": "restocked",
}


def transition(status: str, event: str) -> str:
    """The status after `event`, or Conflict naming the statuses it is allowed from."""
    allowed = TRANSITIONS.get(event, {})
    if status not in allowed:
        raise Conflict(
            f"A listing that is {status.replace('_', ' ')} cannot be "
            f"{_PAST.get(event, event)}; allowed from: {', '.join(sorted(allowed)) or 'nowhere'}.",
            code="invalid_transition",
        )
    return allowed[status]


def settle(status: str, available: int) -> str:
    """The status once stock is taken into account: active with nothing available is sold
    out; sold out with stock back is active; every other status stays."""
    if available == 0 and status in TRANSITIONS["sell_out"]:
        return TRANSITIONS["sell_out"][status]
    if available > 0 and status in TRANSITIONS["restock"]:
        return TRANSITIONS["restock"][status]
    return status


def act(status: str, event: str, available: int) -> str:
    """A cooperative's action followed by what the stock implies (e.g. resume with nothing
    left gives sold_out)."""
    return settle(transition(status, event), available)


def accepts_stock_changes(status: str) -> bool:
    """Closed is final: its stock can only drain (reservations released or sold)."""
    return status != "closed"
