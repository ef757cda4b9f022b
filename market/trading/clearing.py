"""Clearing of a sealed-bid auction: which bids win how many units, pay-as-bid. Pure, no I/O.

At close the trading service loads the auction's bids, calls `clear()` once and keeps every
outcome; `summarise()` gives the totals it records with them.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, TypeVar

Status = Literal["won", "partially_won", "lost"]
LossReason = Literal["below_reserve", "needs_full_quantity", "sold_out"]

# the stable codes a losing bid carries, in plain words for the buyer's notification
REASONS: Final[dict[str, str]] = {
    "below_reserve": "The bid's unit price was below the reserve price.",
    "needs_full_quantity": (
        "The bid asked for more than was left when its turn came and does not accept "
        "a partial fill."
    ),
    "sold_out": "Nothing was left when its turn came: higher-ranked bids took all of it.",
}

_H = TypeVar("_H", str, int)


@dataclass(frozen=True, slots=True)
class SealedBid:
    """A bid as the clearing sees it.

    `placed_seq` is the order in which bids were placed (a database sequence: unique and
    increasing), so an earlier bid has a smaller `placed_seq`.
    """

    id: str
    unit_price_fen: int
    quantity: int
    partial_ok: bool
    placed_seq: int


class BidOutcome(NamedTuple):
    """What one bid got (a named tuple: a million of them are built in one clearing, and a
    tuple costs a fraction of a frozen dataclass to make).

    - `status`: `won` (all the units it asked for), `partially_won` (fewer, at least one; only
      for a bid with `partial_ok`) or `lost` (none).
    - `quantity`: units allocated to the bid, 0 when lost.
    - `unit_price_fen`: the bid's own unit price. Pay-as-bid: a winner owes
      `quantity × unit_price_fen` (`amount_fen`); a loser keeps its price here for the record
      and owes nothing, its quantity being 0.
    - `reason_code`: None for a winner; for a loser one of the stable codes of `LossReason`
      (`below_reserve`, `needs_full_quantity`, `sold_out`); `reason` says it in plain words.
    """

    bid_id: str
    status: Status
    quantity: int
    unit_price_fen: int
    reason_code: LossReason | None = None

    @property
    def reason(self) -> str | None:
        """Why the bid lost, in plain words (None for a winner)."""
        return None if self.reason_code is None else REASONS[self.reason_code]

    @property
    def amount_fen(self) -> int:
        """What the bidder owes: allocated units at its own price (0 when lost)."""
        return self.quantity * self.unit_price_fen


def ranking_key(bid: SealedBid) -> tuple[int, int]:
    """The clearing's order, best first: higher unit price, then placed earlier."""
    return (-bid.unit_price_fen, bid.placed_seq)


def clear(
    bids: Sequence[SealedBid], *, quantity: int, reserve_price_fen: int | None
) -> list[BidOutcome]:
    """Clear a sealed-bid auction of `quantity` units: one outcome per bid, in input order.

    `clear(bids, ...)[k]` is the outcome of `bids[k]`, so the two zip. The ranking is
    `ranking_key` (unit price descending, then `placed_seq` ascending): sort the pairs by the
    bid's `ranking_key` to show them in it.

    - A bid at or above the reserve (`unit_price_fen >= reserve_price_fen`) is eligible; a bid
      below it loses with `below_reserve`. No reserve (None) makes every bid eligible.
    - The eligible bids are walked in ranking order with the units that remain: a bid that fits
      entirely wins all it asked for; a bid larger than what remains wins what remains if it
      accepts a partial fill (`partially_won`), else it loses with `needs_full_quantity` and the
      walk goes on, since a later, smaller bid may still fit; once nothing remains, every later
      eligible bid loses with `sold_out`.
    - Pay-as-bid: every winner pays its own unit price.

    ValueError (naming the bid) when `quantity` is negative or not an int, `reserve_price_fen`
    is below 1, a bid's price or quantity is below 1 or not an int, `partial_ok` is not a bool,
    `placed_seq` is not an int, or two bids share an id or a `placed_seq`.
    """
    _check_terms(quantity, reserve_price_fen)
    n = len(bids)
    if n == 0:
        return []
    # one pass per field, then plain lists: attribute access stays out of the walk
    ids = [bid.id for bid in bids]
    prices = [bid.unit_price_fen for bid in bids]
    wants = [bid.quantity for bid in bids]
    partial = [bid.partial_ok for bid in bids]
    seqs = [bid.placed_seq for bid in bids]
    _check_bids(ids, prices, wants, partial, seqs)

    # Rank once, by an integer equivalent to ranking_key: seq - price * span, where span
    # exceeds the range of the (unique) seqs, so a higher price always gives a smaller key and
    # equal prices order by seq. Comparing ints is several times cheaper than comparing tuples.
    span = max(seqs) - min(seqs) + 1
    keys = [seq - price * span for price, seq in zip(prices, seqs, strict=True)]
    ranking = sorted(range(n), key=keys.__getitem__)

    # Every bid starts as a loser for want of stock, or of price; the walk below only visits
    # the ranking until the quantity runs out and marks what differs. The outcomes are then
    # built in input order: reading the fields in memory order is much faster than in ranking
    # order (a random order) once there are many bids.
    floor = reserve_price_fen or 0
    status: list[Status] = ["lost"] * n
    allocated = [0] * n
    reasons: list[LossReason | None]
    if reserve_price_fen is None:
        reasons = ["sold_out"] * n
    else:
        reasons = ["sold_out" if price >= floor else "below_reserve" for price in prices]
    remaining = quantity
    for i in ranking if remaining else ():
        if prices[i] < floor:
            break  # the rest of the ranking is below the reserve too
        want = wants[i]
        if want <= remaining:
            status[i], allocated[i], reasons[i] = "won", want, None
            remaining -= want
        elif partial[i]:
            status[i], allocated[i], reasons[i] = "partially_won", remaining, None
            remaining = 0
        else:
            reasons[i] = "needs_full_quantity"
            continue
        if not remaining:
            break
    # A million new tuples would set off the cyclic garbage collector again and again; they
    # hold no cycles, so it is paused while they are made (and restored as it was).
    paused = gc.isenabled()
    gc.disable()
    try:
        return list(
            map(BidOutcome._make, zip(ids, status, allocated, prices, reasons, strict=True))
        )
    finally:
        if paused:
            gc.enable()


@dataclass(frozen=True, slots=True)
class ClearingSummary:
    """Totals of one clearing, as the trading service records them with the outcomes."""

    bids: int
    winners: int  # won or partially won
    partially_won: int
    allocated: int  # units
    unsold: int  # units of the offered quantity that no bid took
    revenue_fen: int  # Σ quantity × own unit price over the winners
    lowest_winning_price_fen: int | None  # None when nobody won
    below_reserve: int
    needs_full_quantity: int
    sold_out: int


def summarise(outcomes: Iterable[BidOutcome], *, quantity: int) -> ClearingSummary:
    """Totals of `clear()`'s outcomes for an auction of `quantity` units."""
    outcomes = list(outcomes)
    winners = [o for o in outcomes if o.status != "lost"]
    lost = Counter(o.reason_code for o in outcomes if o.status == "lost")
    allocated = sum(o.quantity for o in winners)
    if allocated > quantity:
        raise ValueError(
            f"the outcomes allocate {allocated} units, more than the {quantity} offered"
        )
    return ClearingSummary(
        bids=len(outcomes),
        winners=len(winners),
        partially_won=sum(o.status == "partially_won" for o in winners),
        allocated=allocated,
        unsold=quantity - allocated,
        revenue_fen=sum(o.amount_fen for o in winners),
        lowest_winning_price_fen=min((o.unit_price_fen for o in winners), default=None),
        below_reserve=lost["below_reserve"],
        needs_full_quantity=lost["needs_full_quantity"],
        sold_out=lost["sold_out"],
    )


# ---------------------------------------------------------------- validation


def _check_terms(quantity: int, reserve_price_fen: int | None) -> None:
    if type(quantity) is not int or quantity < 0:
        raise ValueError(f"quantity must be a whole number of units, 0 or more; got {quantity!r}")
    if reserve_price_fen is not None and (
        type(reserve_price_fen) is not int or reserve_price_fen < 1
    ):
        raise ValueError(
            "reserve_price_fen must be a whole number of fen, at least 1 (None for no reserve); "
            f"got {reserve_price_fen!r}"
        )


def _check_bids(
    ids: list[str],
    prices: list[int],
    wants: list[int],
    partial: list[bool],
    seqs: list[int],
) -> None:
    # Whole columns at C speed first (map, set, min); only a failure looks for the culprit.
    # type() rather than isinstance(): a bool is an int but never a price or a quantity.
    for values, name, what in (
        (prices, "unit_price_fen", "a whole number of fen, at least 1"),
        (wants, "quantity", "a whole number of units, at least 1"),
    ):
        if set(map(type, values)) != {int} or min(values) < 1:
            k = next(k for k, v in enumerate(values) if type(v) is not int or v < 1)
            raise ValueError(f"bid {ids[k]!r}: {name} must be {what}; got {values[k]!r}")
    if set(map(type, partial)) != {bool}:
        k = next(k for k, v in enumerate(partial) if type(v) is not bool)
        raise ValueError(f"bid {ids[k]!r}: partial_ok must be True or False; got {partial[k]!r}")
    if set(map(type, seqs)) != {int}:
        k = next(k for k, v in enumerate(seqs) if type(v) is not int)
        raise ValueError(f"bid {ids[k]!r}: placed_seq must be an int; got {seqs[k]!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"bid ids must be unique; {_first_repeat(ids)!r} appears more than once")
    if len(set(seqs)) != len(seqs):
        seq = _first_repeat(seqs)
        sharing = [bid_id for bid_id, s in zip(ids, seqs, strict=True) if s == seq]
        raise ValueError(
            f"placed_seq must be unique; {seq} is used by bids {', '.join(map(repr, sharing))}"
        )


def _first_repeat(values: list[_H]) -> _H:
    seen: set[_H] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    raise AssertionError("no repeated value")
