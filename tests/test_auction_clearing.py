"""Sealed-bid auction clearing: each rule by example, then against a brute-force reference
and invariants on random auctions (hypothesis)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.trading.clearing import (
    REASONS,
    BidOutcome,
    SealedBid,
    clear,
    ranking_key,
    summarise,
)


def bid(
    bid_id: str, price: int, quantity: int, *, partial: bool = False, seq: int | None = None
) -> SealedBid:
    return SealedBid(
        id=bid_id,
        unit_price_fen=price,
        quantity=quantity,
        partial_ok=partial,
        placed_seq=seq if seq is not None else int(bid_id.strip("abcdefghijklmnopqrstuvwxyz")),
    )


def by_id(outcomes: Sequence[BidOutcome]) -> dict[str, tuple[str, int, str | None]]:
    return {o.bid_id: (o.status, o.quantity, o.reason_code) for o in outcomes}


# ---------------------------------------------------------------- the rules, by example


def test_no_bids_clear_to_nothing() -> None:
    assert clear([], quantity=10, reserve_price_fen=500) == []
    assert clear([], quantity=0, reserve_price_fen=None) == []


def test_outcomes_follow_the_input_order_and_name_their_bid() -> None:
    bids = [bid("b3", 100, 1), bid("b1", 300, 1), bid("b2", 200, 1)]
    outcomes = clear(bids, quantity=2, reserve_price_fen=None)
    assert [o.bid_id for o in outcomes] == ["b3", "b1", "b2"]
    assert by_id(outcomes) == {
        "b1": ("won", 1, None),
        "b2": ("won", 1, None),
        "b3": ("lost", 0, "sold_out"),
    }


def test_a_bid_at_the_reserve_is_eligible_one_fen_below_is_not() -> None:
    bids = [bid("b1", 500, 2), bid("b2", 499, 2), bid("b3", 501, 2)]
    outcomes = by_id(clear(bids, quantity=100, reserve_price_fen=500))
    assert outcomes == {
        "b1": ("won", 2, None),
        "b2": ("lost", 0, "below_reserve"),
        "b3": ("won", 2, None),
    }


def test_without_a_reserve_every_bid_is_eligible() -> None:
    outcomes = clear([bid("b1", 1, 3), bid("b2", 2, 3)], quantity=6, reserve_price_fen=None)
    assert by_id(outcomes) == {"b1": ("won", 3, None), "b2": ("won", 3, None)}


def test_below_reserve_wins_over_sold_out_as_the_reason() -> None:
    # nothing is left for either, but the cheap one would not have been eligible anyway
    bids = [bid("b1", 900, 5), bid("b2", 800, 5), bid("b3", 100, 5)]
    outcomes = by_id(clear(bids, quantity=5, reserve_price_fen=500))
    assert outcomes["b2"] == ("lost", 0, "sold_out")
    assert outcomes["b3"] == ("lost", 0, "below_reserve")


def test_equal_prices_go_to_the_earlier_bid() -> None:
    # the later bid comes first in the list and has the smaller id: only placed_seq counts
    bids = [bid("a", 700, 4, seq=20), bid("b", 700, 4, seq=10), bid("c", 700, 4, seq=30)]
    outcomes = by_id(clear(bids, quantity=6, reserve_price_fen=None))
    assert outcomes["b"] == ("won", 4, None)
    assert outcomes["a"] == ("lost", 0, "needs_full_quantity")  # 2 left, it wants 4
    assert outcomes["c"] == ("lost", 0, "needs_full_quantity")


def test_a_higher_price_beats_an_earlier_bid() -> None:
    bids = [bid("b1", 600, 3, seq=1), bid("b2", 601, 3, seq=2)]
    assert by_id(clear(bids, quantity=3, reserve_price_fen=None)) == {
        "b2": ("won", 3, None),
        "b1": ("lost", 0, "sold_out"),
    }


def test_a_partial_bid_takes_what_is_left() -> None:
    bids = [bid("b1", 900, 6), bid("b2", 800, 10, partial=True), bid("b3", 700, 1, partial=True)]
    outcomes = by_id(clear(bids, quantity=10, reserve_price_fen=None))
    assert outcomes == {
        "b1": ("won", 6, None),
        "b2": ("partially_won", 4, None),
        "b3": ("lost", 0, "sold_out"),
    }


def test_a_partial_bid_that_fits_wins_in_full() -> None:
    outcomes = clear([bid("b1", 900, 4, partial=True)], quantity=4, reserve_price_fen=None)
    assert by_id(outcomes) == {"b1": ("won", 4, None)}


def test_a_big_bid_without_partial_fill_is_skipped_and_a_later_smaller_one_fits() -> None:
    bids = [
        bid("b1", 900, 6),
        bid("b2", 800, 10),  # 4 left: too big, no partial fill
        bid("b3", 700, 3),  # fits
        bid("b4", 650, 2),  # 1 left: too big
        bid("b5", 600, 1),  # fits, nothing left after it
        bid("b6", 500, 1, partial=True),
    ]
    outcomes = by_id(clear(bids, quantity=10, reserve_price_fen=None))
    assert outcomes == {
        "b1": ("won", 6, None),
        "b2": ("lost", 0, "needs_full_quantity"),
        "b3": ("won", 3, None),
        "b4": ("lost", 0, "needs_full_quantity"),
        "b5": ("won", 1, None),
        "b6": ("lost", 0, "sold_out"),
    }


def test_once_nothing_is_left_a_too_big_bid_is_sold_out_not_needs_full_quantity() -> None:
    bids = [bid("b1", 900, 5), bid("b2", 800, 50)]
    outcomes = by_id(clear(bids, quantity=5, reserve_price_fen=None))
    assert outcomes["b2"] == ("lost", 0, "sold_out")


def test_zero_quantity_sells_nothing() -> None:
    bids = [bid("b1", 900, 1, partial=True), bid("b2", 100, 1)]
    outcomes = by_id(clear(bids, quantity=0, reserve_price_fen=500))
    assert outcomes == {"b1": ("lost", 0, "sold_out"), "b2": ("lost", 0, "below_reserve")}


def test_unsold_units_remain_when_no_bid_fits() -> None:
    bids = [bid("b1", 900, 8), bid("b2", 800, 9)]
    outcomes = clear(bids, quantity=7, reserve_price_fen=None)
    assert {o.reason_code for o in outcomes} == {"needs_full_quantity"}
    assert summarise(outcomes, quantity=7).unsold == 7


def test_each_winner_pays_its_own_bid() -> None:
    bids = [bid("b1", 1200, 2), bid("b2", 1000, 3), bid("b3", 950, 5, partial=True)]
    outcomes = clear(bids, quantity=8, reserve_price_fen=900)
    assert [(o.unit_price_fen, o.quantity, o.amount_fen) for o in outcomes] == [
        (1200, 2, 2400),
        (1000, 3, 3000),
        (950, 3, 2850),
    ]
    summary = summarise(outcomes, quantity=8)
    assert summary.revenue_fen == 2400 + 3000 + 2850
    assert (summary.winners, summary.partially_won, summary.allocated) == (3, 1, 8)
    assert (summary.unsold, summary.lowest_winning_price_fen) == (0, 950)


FIVE_BIDS = [
    bid("b1", 900, 5),  # won
    bid("b2", 800, 9),  # 1 left, too big
    bid("b3", 700, 1),  # won, nothing left
    bid("b4", 650, 1),  # sold out
    bid("b5", 100, 1),  # below the reserve
]


def test_losers_keep_their_price_and_owe_nothing() -> None:
    (outcome,) = clear([bid("b1", 300, 2)], quantity=5, reserve_price_fen=400)
    assert (outcome.unit_price_fen, outcome.quantity, outcome.amount_fen) == (300, 0, 0)


def test_reasons_have_a_stable_code_and_plain_words() -> None:
    outcomes = clear(FIVE_BIDS, quantity=6, reserve_price_fen=500)
    codes = [o.reason_code for o in outcomes]
    assert codes == [None, "needs_full_quantity", None, "sold_out", "below_reserve"]
    assert outcomes[0].reason is None
    for outcome in outcomes:
        if outcome.reason_code is not None:
            assert outcome.reason == REASONS[outcome.reason_code]
    assert "partial" in str(outcomes[1].reason)
    assert "Nothing was left" in str(outcomes[3].reason)
    assert "reserve" in str(outcomes[4].reason)
    assert set(REASONS) == {"below_reserve", "needs_full_quantity", "sold_out"}


def test_summary_counts_every_reason() -> None:
    summary = summarise(clear(FIVE_BIDS, quantity=6, reserve_price_fen=500), quantity=6)
    assert (summary.bids, summary.winners, summary.partially_won) == (5, 2, 0)
    assert (summary.allocated, summary.unsold, summary.revenue_fen) == (6, 0, 5 * 900 + 700)
    assert summary.lowest_winning_price_fen == 700
    assert (summary.below_reserve, summary.needs_full_quantity, summary.sold_out) == (1, 1, 1)
    with pytest.raises(ValueError, match="more than the 4 offered"):
        summarise(clear(FIVE_BIDS, quantity=6, reserve_price_fen=500), quantity=4)
    assert summarise([], quantity=3).lowest_winning_price_fen is None


def test_large_prices_and_sequences_rank_exactly() -> None:
    # the integer sort key multiplies price by the range of the sequences: no precision loss
    big = 10**15
    bids = [
        bid("b1", big, 1, seq=-(10**18)),
        bid("b2", big + 1, 1, seq=10**18),
        bid("b3", big, 1, seq=10**18 - 1),
    ]
    outcomes = by_id(clear(bids, quantity=2, reserve_price_fen=big))
    assert outcomes == {
        "b2": ("won", 1, None),
        "b1": ("won", 1, None),
        "b3": ("lost", 0, "sold_out"),
    }


def test_one_fen_more_beats_the_earliest_bid() -> None:
    # the two keys closest to colliding: adjacent prices at the two ends of the sequences
    for bids in (
        [bid("b1", 499, 1, seq=1), bid("b2", 500, 1, seq=9)],
        [bid("b2", 500, 1, seq=9), bid("b1", 499, 1, seq=1)],
    ):
        assert by_id(clear(bids, quantity=1, reserve_price_fen=None)) == {
            "b2": ("won", 1, None),
            "b1": ("lost", 0, "sold_out"),
        }


@pytest.mark.parametrize(
    ("bids", "quantity", "reserve", "message"),
    [
        ([], -1, None, "quantity must be a whole number of units, 0 or more; got -1"),
        ([], 2.5, None, "quantity must be a whole number"),
        ([], True, None, "quantity must be a whole number"),
        ([], 1, 0, "reserve_price_fen must be a whole number of fen, at least 1"),
        ([], 1, 9.5, "reserve_price_fen must be"),
        ([bid("b1", 0, 1)], 1, None, "bid 'b1': unit_price_fen must be .* at least 1; got 0"),
        ([bid("b1", 5, 1), bid("b2", -5, 1)], 1, None, "bid 'b2': unit_price_fen"),
        ([bid("b1", 5.5, 1)], 1, None, "bid 'b1': unit_price_fen .* got 5.5"),
        ([bid("b1", True, 1)], 1, None, "bid 'b1': unit_price_fen .* got True"),
        ([bid("b1", 5, 0)], 1, None, "bid 'b1': quantity must be .* at least 1; got 0"),
        ([bid("b1", 5, 2.0)], 1, None, "bid 'b1': quantity"),
        ([bid("b1", 5, 1, partial=1)], 1, None, "bid 'b1': partial_ok must be True or False"),
        ([bid("b1", 5, 1, seq="7")], 1, None, "bid 'b1': placed_seq must be an int"),
        ([bid("b1", 5, 1), bid("b1", 6, 1, seq=2)], 1, None, "ids must be unique; 'b1'"),
        (
            [bid("b1", 5, 1, seq=4), bid("b2", 6, 1, seq=5), bid("b3", 7, 1, seq=4)],
            1,
            None,
            "placed_seq must be unique; 4 is used by bids 'b1', 'b3'",
        ),
    ],
)
def test_invalid_input_is_refused(
    bids: list[SealedBid], quantity: int, reserve: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        clear(bids, quantity=quantity, reserve_price_fen=reserve)


# ---------------------------------------------------------------- against a reference


def reference_clear(
    bids: Sequence[SealedBid], quantity: int, reserve_price_fen: int | None
) -> list[BidOutcome]:
    """The rules read literally: pick the best bid still waiting, again and again, no sort."""
    result: dict[str, BidOutcome] = {}
    waiting = []
    for b in bids:
        if reserve_price_fen is not None and b.unit_price_fen < reserve_price_fen:
            result[b.id] = BidOutcome(b.id, "lost", 0, b.unit_price_fen, "below_reserve")
        else:
            waiting.append(b)
    left = quantity
    while waiting:
        best = waiting[0]
        for b in waiting:
            higher = b.unit_price_fen > best.unit_price_fen
            same_but_earlier = (
                b.unit_price_fen == best.unit_price_fen and b.placed_seq < best.placed_seq
            )
            if higher or same_but_earlier:
                best = b
        waiting.remove(best)
        if left == 0:
            result[best.id] = BidOutcome(best.id, "lost", 0, best.unit_price_fen, "sold_out")
        elif best.quantity <= left:
            result[best.id] = BidOutcome(best.id, "won", best.quantity, best.unit_price_fen)
            left -= best.quantity
        elif best.partial_ok:
            result[best.id] = BidOutcome(best.id, "partially_won", left, best.unit_price_fen)
            left = 0
        else:
            result[best.id] = BidOutcome(
                best.id, "lost", 0, best.unit_price_fen, "needs_full_quantity"
            )
    return [result[b.id] for b in bids]


# short enough for every run; generation may be slow on a busy shared machine, which is no fault
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# many ties: most prices from a handful of values, a few anywhere up to a lot of money
prices = st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(1, 10**12))
reserves = st.one_of(st.none(), st.integers(1, 7), st.integers(1, 10**12))


@st.composite
def auctions(draw: st.DrawFn) -> tuple[list[SealedBid], int, int | None]:
    n = draw(st.integers(0, 25))
    seqs = draw(
        st.lists(
            st.one_of(st.integers(0, 60), st.integers(-(10**15), 10**15)),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    bids = [
        SealedBid(
            id=f"bid-{k}",
            unit_price_fen=draw(prices),
            quantity=draw(st.integers(1, 12)),
            partial_ok=draw(st.booleans()),
            placed_seq=seq,
        )
        for k, seq in enumerate(seqs)
    ]
    return bids, draw(st.integers(0, 90)), draw(reserves)


@PROPERTY
@given(auctions())
def test_clear_matches_the_reference(auction: tuple[list[SealedBid], int, int | None]) -> None:
    bids, quantity, reserve = auction
    assert clear(bids, quantity=quantity, reserve_price_fen=reserve) == reference_clear(
        bids, quantity, reserve
    )


@PROPERTY
@given(auctions())
def test_invariants(auction: tuple[list[SealedBid], int, int | None]) -> None:
    bids, quantity, reserve = auction
    outcomes = clear(bids, quantity=quantity, reserve_price_fen=reserve)
    assert [o.bid_id for o in outcomes] == [b.id for b in bids]
    allocated = sum(o.quantity for o in outcomes)
    assert allocated <= quantity

    for b, o in zip(bids, outcomes, strict=True):
        assert o.unit_price_fen == b.unit_price_fen  # pay-as-bid
        below = reserve is not None and b.unit_price_fen < reserve
        assert below == (o.reason_code == "below_reserve")
        if o.status == "won":
            assert o.quantity == b.quantity and o.reason_code is None
        elif o.status == "partially_won":
            assert b.partial_ok and 0 < o.quantity < b.quantity and o.reason_code is None
            assert allocated == quantity  # a partial fill takes whatever was left
        else:
            assert o.quantity == 0 and o.reason_code in REASONS
        if o.reason_code == "needs_full_quantity":
            assert not b.partial_ok and b.quantity > quantity - allocated
        if o.reason_code == "sold_out":
            assert allocated == quantity
        if b.partial_ok and not below and o.quantity < b.quantity:
            assert allocated == quantity  # nothing is left on the table for a partial bidder

    assert sum(o.status == "partially_won" for o in outcomes) <= 1
    summary = summarise(outcomes, quantity=quantity)
    assert summary.allocated == allocated
    assert summary.unsold == quantity - allocated
    assert summary.revenue_fen == sum(
        o.quantity * b.unit_price_fen for b, o in zip(bids, outcomes, strict=True)
    )
    if allocated < quantity:  # units unsold: only bids too big to fit lost while eligible
        assert summary.sold_out == 0


@PROPERTY
@given(auctions())
def test_ranking_monotonicity(auction: tuple[list[SealedBid], int, int | None]) -> None:
    """Whatever a lower-ranked bid receives, a higher-ranked one could have had."""
    bids, quantity, reserve = auction
    outcomes = clear(bids, quantity=quantity, reserve_price_fen=reserve)
    ranked = sorted(zip(bids, outcomes, strict=True), key=lambda pair: ranking_key(pair[0]))
    for high in range(len(ranked)):
        a, a_got = ranked[high]
        for _, b_got in ranked[high + 1 :]:
            if b_got.quantity == 0:
                continue
            # b received something, so a was eligible and units were left at a's turn
            assert a_got.reason_code not in ("below_reserve", "sold_out")
            if a.quantity <= b_got.quantity or a.partial_ok:
                assert a_got.status == "won"  # a fitted, or would have taken it all


@PROPERTY
@given(auctions(), st.data())
def test_a_better_bid_never_gets_less(
    auction: tuple[list[SealedBid], int, int | None], data: st.DataObject
) -> None:
    """Raising one's price, or the same price placed earlier, never lowers one's allocation."""
    bids, quantity, reserve = auction
    if not bids:
        return
    k = data.draw(st.integers(0, len(bids) - 1))
    before = clear(bids, quantity=quantity, reserve_price_fen=reserve)[k].quantity
    raised = [*bids]
    raised[k] = SealedBid(
        bids[k].id,
        bids[k].unit_price_fen + data.draw(st.integers(1, 5)),
        bids[k].quantity,
        bids[k].partial_ok,
        bids[k].placed_seq,
    )
    assert clear(raised, quantity=quantity, reserve_price_fen=reserve)[k].quantity >= before
    earliest = min(b.placed_seq for b in bids) - 1
    earlier = [*bids]
    earlier[k] = SealedBid(
        bids[k].id, bids[k].unit_price_fen, bids[k].quantity, bids[k].partial_ok, earliest
    )
    assert clear(earlier, quantity=quantity, reserve_price_fen=reserve)[k].quantity >= before


@PROPERTY
@given(auctions(), st.randoms(use_true_random=False))
def test_the_order_of_the_input_does_not_matter(
    auction: tuple[list[SealedBid], int, int | None], rnd: random.Random
) -> None:
    bids, quantity, reserve = auction
    shuffled = [*bids]
    rnd.shuffle(shuffled)
    assert by_id(clear(shuffled, quantity=quantity, reserve_price_fen=reserve)) == by_id(
        clear(bids, quantity=quantity, reserve_price_fen=reserve)
    )


@PROPERTY
@given(auctions())
def test_bids_below_the_reserve_change_nothing_for_the_others(
    auction: tuple[list[SealedBid], int, int | None],
) -> None:
    bids, quantity, reserve = auction
    if reserve is None:
        return
    eligible = [b for b in bids if b.unit_price_fen >= reserve]
    everyone = by_id(clear(bids, quantity=quantity, reserve_price_fen=reserve))
    alone = by_id(clear(eligible, quantity=quantity, reserve_price_fen=reserve))
    assert alone == {bid_id: everyone[bid_id] for bid_id in alone}
    assert alone == by_id(clear(eligible, quantity=quantity, reserve_price_fen=None))
