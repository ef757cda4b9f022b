"""The hash chain of the sourcing ledger: canonical content, hashing, verification. Pure."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)

# The fields that a record's hash covers, in this order. Never reorder or remove one: past
# hashes would stop verifying. A new field needs a new chain version.
CHAINED_FIELDS = (
    "seq",
    "id",
    "lot_id",
    "cooperative_id",
    "household_id",
    "kind",
    "reverses_seq",
    "quantity",
    "unit_price_fen",
    "amount_fen",
    "purchase_date",
    "evidence_ref",
    "evidence_url",
    "reason",
    "recorded_by_id",
    "recorded_at",
)


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def canonical(record: Any) -> bytes:
    """Sorted-key compact JSON of the chained fields (UTF-8, Chinese kept as is)."""
    get = record.get if isinstance(record, dict) else lambda name: getattr(record, name)
    content = {name: _plain(get(name)) for name in CHAINED_FIELDS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: bytes, record: Any) -> bytes:
    return hashlib.sha256(prev_hash + canonical(record)).digest()


@dataclass(frozen=True)
class Break:
    """The first record that does not verify, and why."""

    seq: int
    record_id: str
    reason: str


class ChainVerifier:
    """Feed records in `seq` order; remembers the first break."""

    def __init__(self) -> None:
        self.expected_prev = GENESIS
        self.expected_seq = 1
        self.checked = 0
        self.first_break: Break | None = None

    def feed(self, record: dict[str, Any]) -> None:
        self.checked += 1
        if self.first_break is not None:
            return
        get = record.__getitem__
        seq, record_id = int(get("seq")), str(get("id"))
        if seq != self.expected_seq:
            self._broken(seq, record_id, f"expected record {self.expected_seq} here: a gap")
        elif get("prev_hash") != self.expected_prev:
            self._broken(seq, record_id, "prev_hash does not match the previous record's hash")
        elif chain_hash(get("prev_hash"), record) != get("hash"):
            self._broken(seq, record_id, "content does not match its hash: the record changed")
        self.expected_prev = get("hash")
        self.expected_seq = seq + 1

    def _broken(self, seq: int, record_id: str, reason: str) -> None:
        self.first_break = Break(seq=seq, record_id=record_id, reason=reason)
