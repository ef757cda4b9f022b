"""Clearing of a sealed-bid auction: which bids win how many units, pay-as-bid. Pure, no I/O.

At close the trading service loads the auction's bids, calls `clear()` once and keeps every
outcome; `summarise()` gives the totals it records with them.
"""

from __future__ import annotations

import gc
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, islice, repeat
from operator import ge, lt
from typing import Final, Literal, NamedTuple, TypeVar, overload

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


class SealedBid(NamedTuple):
    """A bid as the clearing sees it (a named tuple: immutable, and made three times faster
    than a frozen dataclass, for auctions of a million bids).

    `placed_seq` is the order in which bids were placed (a database sequence: unique and
    increasing), so an earlier bid has a smaller `placed_seq`.
    """

    id: str
    unit_price_fen: int
    quantity: int
    partial_ok: bool
    placed_seq: int


class BidOutcome(NamedTuple):
    """What one bid got.

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


class Outcomes(Sequence[BidOutcome]):
    """The outcomes of one clearing, one per bid in input order, kept compact: the units
    allocated to each winning bid, the bids that were skipped for want of a partial fill and
    the one partially filled, from which each `BidOutcome` is made when it is read (a million
    named tuples would cost more than the clearing itself).

    A read-only sequence of `BidOutcome`: indexing, iterating, `len`, and `==` against any
    sequence of outcomes (a list, for one) compare the outcomes themselves. `allocated(k)` is
    the units allocated to bid k and `winners()` the indices of the winning bids, without
    making outcomes."""

    __slots__ = (
        "_allocated",
        "_floor",
        "_full_from",
        "_ids",
        "_list",
        "_needs_full",
        "_partial",
        "_prices",
        "_wants",
    )

    def __init__(
        self,
        ids: list[str],
        prices: list[int],
        wants: list[int],
        full_from: int | None,
        allocated: dict[int, int],
        floor: int,
        needs_full: set[int],
        partial: int,
    ) -> None:
        self._ids = ids
        self._prices = prices
        self._wants = wants
        # every bid priced at or above full_from (None: no such price) won all it asked for
        self._full_from = full_from
        self._allocated = allocated  # units by index of the other winning bids
        self._floor = floor
        self._needs_full = needs_full
        self._partial = partial  # the index of the partially won bid, -1 when none
        self._list: list[BidOutcome] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def allocated(self, index: int) -> int:
        """Units allocated to the bid at `index` (0 when it lost)."""
        k = range(len(self._ids))[index]
        if self._full_from is not None and self._prices[k] >= self._full_from:
            return self._wants[k]
        return self._allocated.get(k, 0)

    def winners(self) -> list[int]:
        """Indices of the bids that won units (in full or in part), in input order."""
        found = set(self._allocated)
        if self._full_from is not None:
            found.update(
                compress(range(len(self._ids)), map(ge, self._prices, repeat(self._full_from)))
            )
        return sorted(found)

    @overload
    def __getitem__(self, index: int) -> BidOutcome: ...

    @overload
    def __getitem__(self, index: slice) -> list[BidOutcome]: ...

    def __getitem__(self, index: int | slice) -> BidOutcome | list[BidOutcome]:
        if isinstance(index, slice):
            return self._all()[index]
        k = range(len(self._ids))[index]  # IndexError as a list's, negative indices too
        price = self._prices[k]
        if self._full_from is not None and price >= self._full_from:
            return BidOutcome(self._ids[k], "won", self._wants[k], price)
        quantity = self._allocated.get(k)
        if quantity:
            status: Status = "partially_won" if k == self._partial else "won"
            return BidOutcome(self._ids[k], status, quantity, price)
        if price < self._floor:
            return BidOutcome(self._ids[k], "lost", 0, price, "below_reserve")
        if k in self._needs_full:
            return BidOutcome(self._ids[k], "lost", 0, price, "needs_full_quantity")
        return BidOutcome(self._ids[k], "lost", 0, price, "sold_out")

    def __iter__(self) -> Iterator[BidOutcome]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Outcomes):
            other = other._all()
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == len(self) and self._all() == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-sequence semantics, as a list

    def __repr__(self) -> str:
        return f"Outcomes({self._all()!r})"

    def _all(self) -> list[BidOutcome]:
        """Every outcome as a BidOutcome, made once, column by column."""
        if self._list is not None:
            return self._list
        n = len(self._ids)
        floor = self._floor
        statuses: list[Status] = ["lost"] * n
        reasons: list[LossReason | None]
        if floor:
            reasons = ["sold_out" if price >= floor else "below_reserve" for price in self._prices]
        else:
            reasons = ["sold_out"] * n
        for k in self._needs_full:
            reasons[k] = "needs_full_quantity"
        quantities = list(map(self._allocated.get, range(n), repeat(0)))
        if self._full_from is not None:
            for k in compress(range(n), map(ge, self._prices, repeat(self._full_from))):
                quantities[k] = self._wants[k]
        for k in compress(range(n), quantities):
            statuses[k], reasons[k] = "won", None
        if self._partial >= 0:
            statuses[self._partial] = "partially_won"
        # the tuples hold no cycles: the cyclic collector is paused while they are made
        paused = gc.isenabled()
        gc.disable()
        try:
            self._list = list(
                map(
                    BidOutcome._make,
                    zip(self._ids, statuses, quantities, self._prices, reasons, strict=True),
                )
            )
        finally:
            if paused:
                gc.enable()
        return self._list


# The estimated band around the price where the demand reaches the quantity: from where the
# sample's demand exceeds _HIGH × quantity down to where it reaches _LOW × quantity. The sample
# has about _SAMPLE bids, one in every step (at least _MIN_STEP, else no estimate).
_HIGH = 0.9
_LOW = 1.15
_SAMPLE = 8192
_MIN_STEP = 8


def ranking_key(bid: SealedBid) -> tuple[int, int]:
    """The clearing's order, best first: higher unit price, then placed earlier."""
    return (-bid.unit_price_fen, bid.placed_seq)


def clear(bids: Sequence[SealedBid], *, quantity: int, reserve_price_fen: int | None) -> Outcomes:
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

    The outcomes come as `Outcomes`, a compact sequence of `BidOutcome`.

    ValueError (naming the bid) when `quantity` is negative or not an int, `reserve_price_fen`
    is below 1, a bid's price or quantity is below 1 or not an int, `partial_ok` is not a bool,
    `placed_seq` is not an int, or two bids share an id or a `placed_seq`.
    """
    _check_terms(quantity, reserve_price_fen)
    n = len(bids)
    floor = reserve_price_fen or 0
    if n == 0:
        return Outcomes([], [], [], None, {}, floor, set(), -1)
    # one pass per field, then plain lists: attribute access stays out of the walk
    ids = [bid.id for bid in bids]
    prices = [bid.unit_price_fen for bid in bids]
    wants = [bid.quantity for bid in bids]
    partial = [bid.partial_ok for bid in bids]
    seqs = [bid.placed_seq for bid in bids]
    in_seq_order = _check_bids(ids, prices, wants, partial, seqs)

    allocated: dict[int, int] = {}  # units per winning bid below `full_from`, by index
    needs_full: list[int] = []
    partially_won = -1
    remaining = quantity
    # The walk usually stops where the quantity runs out, long before the end of the ranking,
    # and most of what it visits before fits: so it is not done bid by bid over a full sort.
    # A sample of the bids gives two prices around the one where the demand from the top
    # reaches the quantity. Every eligible bid priced at or above the higher one (`full_from`)
    # wins in full when their demand, counted exactly, fits in the quantity: the walk would
    # only ever take them all. Then the bids between the two prices are ranked and walked,
    # and only if the quantity is not exhausted there, the cheaper rest.
    full_from: int | None = None
    bands: list[tuple[int, int | None]] = [(floor, None)]
    if remaining:
        high, low = _estimated_band(prices, wants, quantity, floor)
        if high is not None:
            top = sum(compress(wants, map(ge, prices, repeat(high))))
            if top <= remaining:
                full_from, remaining = high, remaining - top
                bands = [(low, high), (floor, low)]
            else:  # a poor guess: rank them all, the top part first
                bands = [(high, None), (low, high), (floor, low)]
        elif low > floor:
            bands = [(low, None), (floor, low)]
    keys: list[int] | None = None
    for band_low, band_high in bands:
        if not remaining:
            break
        if band_high is not None and band_high <= band_low:
            continue
        part = _priced_between(prices, band_low, band_high)
        if in_seq_order:
            # the input is in placing order, so index order is placed_seq order among equal
            # prices, and a stable sort by price alone (descending) is the ranking
            part.sort(key=prices.__getitem__, reverse=True)
        else:
            if keys is None:
                # seq - price * span: span exceeds the range of the (unique) seqs, so a
                # higher price always gives a smaller key, equal prices order by seq
                span = max(seqs) - min(seqs) + 1
                keys = [seq - price * span for price, seq in zip(prices, seqs, strict=True)]
            part.sort(key=keys.__getitem__)
        # The head of the band whose running total of units fits wins in full, every bid of
        # it: found at C speed with the running totals, no bid skipped in it.
        asked = list(map(wants.__getitem__, part))
        running = list(accumulate(asked))
        fits = bisect_right(running, remaining)
        if fits:
            allocated.update(zip(part[:fits], asked[:fits], strict=True))
            remaining -= running[fits - 1]
        # then the walk, bid by bid, from the first that did not fit
        for i in islice(part, fits, None) if remaining else ():
            want = wants[i]
            if want <= remaining:
                allocated[i] = want
                remaining -= want
                if not remaining:
                    break
            elif partial[i]:
                allocated[i] = remaining
                partially_won = i
                remaining = 0
                break
            else:
                needs_full.append(i)
    return Outcomes(ids, prices, wants, full_from, allocated, floor, set(needs_full), partially_won)


def _estimated_band(
    prices: list[int], wants: list[int], quantity: int, floor: int
) -> tuple[int | None, int]:
    """(high, low): prices between which the demand of the eligible bids counted from the top
    of the ranking very likely reaches `quantity`, estimated from an evenly spread sample.
    `high` is None when even the top price level may ask for too much; `low` is `floor` when
    the whole eligible demand may be needed. Only a guess: the clearing counts the demand at
    `high` exactly and walks on below `low` when needed."""
    step = len(prices) // _SAMPLE
    if step < _MIN_STEP:  # too few bids for a guess to pay: rank them all
        return None, floor
    demand: dict[int, int] = {}
    for price, want in zip(prices[::step], wants[::step], strict=True):
        if price >= floor:
            demand[price] = demand.get(price, 0) + want * step
    high: int | None = None
    asked = 0
    for price in sorted(demand, reverse=True):
        asked += demand[price]
        if asked >= quantity * _LOW:
            return high, price
        if asked <= quantity * _HIGH:
            high = price
    return high, floor


def _priced_between(prices: list[int], low: int, high: int | None) -> list[int]:
    """Indices of the bids priced at or above `low` and (when given) below `high`."""
    if high is None:
        return list(compress(range(len(prices)), map(ge, prices, repeat(low))))
    # a range's `in` is arithmetic for ints: one pass at C speed
    return list(compress(range(len(prices)), map(range(low, high).__contains__, prices)))


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
) -> bool:
    """Refuse bad bids (ValueError naming the first); return whether the bids come in
    `placed_seq` order (strictly increasing, hence unique), as the trading service loads
    them."""
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
    if all(map(lt, seqs, islice(seqs, 1, None))):
        return True
    if len(set(seqs)) != len(seqs):
        seq = _first_repeat(seqs)
        sharing = [bid_id for bid_id, s in zip(ids, seqs, strict=True) if s == seq]
        raise ValueError(
            f"placed_seq must be unique; {seq} is used by bids {', '.join(map(repr, sharing))}"
        )
    return False


def _first_repeat(values: list[_H]) -> _H:
    seen: set[_H] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    raise AssertionError("no repeated value")
