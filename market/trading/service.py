"""Bids and counter-offers on negotiable listings; sealed bids on auctions and their one
clearing. Every acceptance and every auction win becomes an order through the orders service,
which reserves the stock in the same transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, NamedTuple

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from market.calendar import CHINA, china_today
from market.db import collector_paused, utcnow
from market.errors import Conflict, Invalid, NotFound
from market.listings import service as listings_service
from market.notifications import service as notifications_service
from market.orders import service as orders_service
from market.organisations import service as organisations_service
from market.organisations.models import Organisation
from market.pagination import PageParams, paginate
from market.regions import service as regions_service
from market.trading import clearing, states
from market.trading.models import AuctionClearing, Bid, CounterOffer

MAX_BID_DAYS = 30


async def get_bid(
    session: AsyncSession,
    *,
    bid_id: uuid.UUID,
    buyer_id: uuid.UUID | None = None,
    cooperative_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Bid:
    stmt = select(Bid).where(Bid.id == bid_id)
    if buyer_id is not None:
        stmt = stmt.where(Bid.buyer_id == buyer_id)
    if cooperative_id is not None:
        # a sealed auction bid is not the cooperative's to see before the clearing
        stmt = stmt.where(Bid.cooperative_id == cooperative_id, Bid.kind == "negotiation")
    if lock:
        stmt = stmt.with_for_update()
    bid = await session.scalar(stmt)
    if bid is None:
        raise NotFound("No such bid.")
    return bid


async def counters_of(session: AsyncSession, bid_ids: list[uuid.UUID]) -> list[CounterOffer]:
    rows = await session.scalars(
        select(CounterOffer)
        .where(CounterOffer.bid_id.in_(bid_ids))
        .order_by(CounterOffer.created_at, CounterOffer.id)
    )
    return list(rows)


async def list_bids(
    session: AsyncSession,
    *,
    page: PageParams,
    buyer_id: uuid.UUID | None = None,
    cooperative_id: uuid.UUID | None = None,
    listing_id: uuid.UUID | None = None,
) -> tuple[list[Bid], str | None]:
    stmt = select(Bid)
    if buyer_id is not None:
        stmt = stmt.where(Bid.buyer_id == buyer_id)
    if cooperative_id is not None:
        stmt = stmt.where(Bid.cooperative_id == cooperative_id, Bid.kind == "negotiation")
    if listing_id is not None:
        stmt = stmt.where(Bid.listing_id == listing_id)
    return await paginate(session, stmt, page, [Bid.created_at, Bid.id], descending=True)


def _yuan(fen: int) -> str:
    return notifications_service.yuan(fen)


# ---------------------------------------------------------------- placing


async def place_bid(
    session: AsyncSession,
    *,
    buyer: Organisation,
    user_id: uuid.UUID | None,
    data: dict[str, Any],
    snipe_minutes: int,
    snipe_max_extensions: int,
) -> Bid:
    """A bid on a negotiable listing (open until it expires or the cooperative answers) or a
    sealed bid on an auction (until the close; a bid in the last `snipe_minutes` extends the
    close by as much, at most `snipe_max_extensions` times)."""
    if buyer.verification_status != "verified":
        raise Conflict(
            "Your organisation is not verified by the platform yet; bidding opens once it is.",
            code="buyer_not_verified",
        )
    await regions_service.require_region(
        session, data["destination_code"], field="destination_code"
    )
    connection = await session.connection()
    rows = await listings_service.public_rows(connection, [data["listing_id"]], china_today())
    if not rows:
        raise Invalid.field("listing_id", "This listing is not on sale now.", code="not_on_sale")
    row = rows[0]
    if row["cooperative_id"] == str(buyer.id):
        raise Invalid.field("listing_id", "You cannot bid on your own listing.")
    now = utcnow()
    if row["sale_mode"] == "fixed":
        raise Invalid.field(
            "listing_id",
            "This listing is sold at a fixed price: order it instead of bidding.",
            code="fixed_price",
        )
    kind = "auction" if row["sale_mode"] == "auction" else "negotiation"
    available = int(row["quantity_available"])
    expires_at = data.get("expires_at")
    if kind == "negotiation":
        if expires_at is None:
            raise Invalid.field("expires_at", "A bid needs the time until which it stands.")
        if not now < expires_at <= now + dt.timedelta(days=MAX_BID_DAYS):
            raise Invalid.field(
                "expires_at", f"must be in the future and within {MAX_BID_DAYS} days."
            )
        if data["quantity"] < row["min_order_quantity"]:
            raise Invalid.field(
                "quantity",
                f"The minimum order for this listing is {row['min_order_quantity']}.",
                code="below_minimum_order",
            )
    else:
        expires_at = None
        # the listing's lock orders bids against the clearing and the close extensions
        listing = await listings_service.get_listing(
            session, listing_id=data["listing_id"], lock=True
        )
        # the clock and the listing as they are once the lock is ours: a clearing that held
        # it meanwhile has closed the listing, and the close may have passed while we waited
        now = utcnow()
        closes_at = listing.auction_closes_at
        if listing.status != "active" or closes_at is None or closes_at <= now:
            raise Conflict("This auction's bidding has closed.", code="auction_closed")
        available = listing.quantity_available
        if closes_at - now < dt.timedelta(minutes=snipe_minutes):
            await listings_service.extend_auction(
                session,
                listing=listing,
                minutes=snipe_minutes,
                max_extensions=snipe_max_extensions,
            )
    if data["quantity"] > available:
        raise Invalid.field(
            "quantity",
            f"Only {available} are available.",
            code="more_than_available",
        )
    bid = Bid(
        kind=kind,
        listing_id=data["listing_id"],
        cooperative_id=uuid.UUID(row["cooperative_id"]),
        buyer_id=buyer.id,
        placed_by_id=user_id,
        status="open",
        unit_price_fen=data["unit_price_fen"],
        quantity=data["quantity"],
        partial_ok=data["partial_ok"],
        expires_at=expires_at,
        destination_code=data["destination_code"],
        address=data["address"],
        contact_name=data["contact_name"],
        contact_phone=data["contact_phone"],
        note=data.get("note"),
    )
    session.add(bid)
    await session.flush()
    if kind == "negotiation":
        await notifications_service.notify(
            session,
            organisation_id=bid.cooperative_id,
            kind="new_bid",
            subject_type="bid",
            subject_id=bid.id,
            context={
                "buyer": buyer.name_zh,
                "title": row["title_zh"],
                "price": _yuan(bid.unit_price_fen),
                "quantity": bid.quantity,
            },
        )
    return bid


# ---------------------------------------------------------------- negotiation


def _order_data(bid: Bid, quantity: int) -> dict[str, Any]:
    return {
        "lines": [{"listing_id": bid.listing_id, "quantity": quantity}],
        "destination_code": bid.destination_code,
        "address": bid.address,
        "contact_name": bid.contact_name,
        "contact_phone": bid.contact_phone,
        "note": bid.note,
    }


async def _expired_now(session: AsyncSession, bid: Bid) -> None:
    """A bid past its time cannot be answered (409 naming it expired), even before the
    worker has marked it so."""
    if (
        bid.kind == "negotiation"
        and bid.status in ("open", "countered")
        and bid.expires_at is not None
        and bid.expires_at <= utcnow()
    ):
        raise Conflict("This bid has expired.", code="invalid_transition", current_status="expired")


async def _make_order(
    session: AsyncSession,
    bid: Bid,
    *,
    quantity: int,
    unit_price_fen: int,
    terms: orders_service.Terms,
    user_id: uuid.UUID | None,
) -> None:
    buyer = await organisations_service.get_organisation(session, organisation_id=bid.buyer_id)
    order = await orders_service.place_order(
        session,
        buyer=buyer,
        user_id=user_id,
        data=_order_data(bid, quantity),
        terms=terms,
        source="bid",
        prices={bid.listing_id: unit_price_fen},
    )
    bid.status = states.transition(bid.status, "accept")
    bid.filled_quantity = quantity
    bid.order_id = order.id
    bid.decided_at = utcnow()
    bid.updated_at = utcnow()
    # the cooperative taking the buyer's own terms after countering withdraws its counter
    await _close_counters(session, bid, "declined")
    listing = await listings_service.get_listing(session, listing_id=bid.listing_id)
    await notifications_service.notify(
        session,
        organisation_id=bid.buyer_id,
        kind="bid_accepted",
        subject_type="order",
        subject_id=order.id,
        context={
            "title": listing.title_zh,
            "terms": f"{quantity} × {_yuan(unit_price_fen)}",
            "due": order.payment_due_at.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )


async def accept_bid(
    session: AsyncSession,
    *,
    bid_id: uuid.UUID,
    cooperative_id: uuid.UUID,
    quantity: int | None,
    terms: orders_service.Terms,
    user_id: uuid.UUID | None,
) -> Bid:
    """Accept fully, or partially when the buyer allows it: the stock is reserved and the
    order created in this transaction (409 when the stock is no longer there)."""
    bid = await get_bid(session, bid_id=bid_id, cooperative_id=cooperative_id, lock=True)
    await _expired_now(session, bid)
    states.transition(bid.status, "accept")  # refuse early, naming the status
    take = quantity or bid.quantity
    if take > bid.quantity:
        raise Invalid.field("quantity", f"The bid is for {bid.quantity}; you cannot give more.")
    if take < bid.quantity and not bid.partial_ok:
        raise Invalid.field(
            "quantity",
            "The buyer asked for the whole quantity and does not accept a partial fill.",
            code="partial_not_accepted",
        )
    await _make_order(
        session, bid, quantity=take, unit_price_fen=bid.unit_price_fen, terms=terms, user_id=user_id
    )
    return bid


async def reject_bid(
    session: AsyncSession, *, bid_id: uuid.UUID, cooperative_id: uuid.UUID, reason: str
) -> Bid:
    bid = await get_bid(session, bid_id=bid_id, cooperative_id=cooperative_id, lock=True)
    await _expired_now(session, bid)
    bid.status = states.transition(bid.status, "reject")
    bid.outcome_reason = reason
    bid.decided_at = bid.updated_at = utcnow()
    await _close_counters(session, bid, "declined")
    listing = await listings_service.get_listing(session, listing_id=bid.listing_id)
    await notifications_service.notify(
        session,
        organisation_id=bid.buyer_id,
        kind="bid_rejected",
        subject_type="bid",
        subject_id=bid.id,
        context={"title": listing.title_zh, "reason": reason},
    )
    return bid


async def _close_counters(session: AsyncSession, bid: Bid, status: str) -> None:
    for counter in await counters_of(session, [bid.id]):
        if counter.status == "open":
            counter.status = status
    await session.flush()


async def counter_bid(
    session: AsyncSession,
    *,
    bid_id: uuid.UUID,
    cooperative_id: uuid.UUID,
    data: dict[str, Any],
    user_id: uuid.UUID | None,
) -> CounterOffer:
    """Answer with other terms; an earlier open counter-offer is replaced. A counter stays
    within the bid: at most its quantity (the most the buyer wants) and no later than its
    expiry (the buyer's time to decide), which is when the expiry sweep ends the bid."""
    bid = await get_bid(session, bid_id=bid_id, cooperative_id=cooperative_id, lock=True)
    await _expired_now(session, bid)
    countered = states.transition(bid.status, "counter")
    now = utcnow()
    if not now < data["expires_at"] <= now + dt.timedelta(days=MAX_BID_DAYS):
        raise Invalid.field("expires_at", f"must be in the future and within {MAX_BID_DAYS} days.")
    if bid.expires_at is not None and data["expires_at"] > bid.expires_at:
        raise Invalid.field(
            "expires_at",
            "must be no later than the bid's own expiry, "
            f"{bid.expires_at.astimezone(CHINA):%Y-%m-%d %H:%M} (China time).",
        )
    if data["quantity"] > bid.quantity:
        raise Invalid.field(
            "quantity", f"The bid is for {bid.quantity}; a counter-offer cannot offer more."
        )
    bid.status = countered  # checked above, changed only once the terms are valid
    await _close_counters(session, bid, "declined")
    counter = CounterOffer(bid_id=bid.id, created_by_id=user_id, status="open", **data)
    session.add(counter)
    bid.updated_at = now
    await session.flush()
    cooperative = await organisations_service.get_organisation(
        session, organisation_id=cooperative_id
    )
    await notifications_service.notify(
        session,
        organisation_id=bid.buyer_id,
        kind="bid_countered",
        subject_type="bid",
        subject_id=bid.id,
        context={
            "cooperative": cooperative.name_zh,
            "terms": f"{counter.quantity} × {_yuan(counter.unit_price_fen)}",
        },
    )
    return counter


async def accept_counter(
    session: AsyncSession,
    *,
    bid_id: uuid.UUID,
    counter_id: uuid.UUID,
    buyer_id: uuid.UUID,
    terms: orders_service.Terms,
    user_id: uuid.UUID | None,
) -> Bid:
    bid = await get_bid(session, bid_id=bid_id, buyer_id=buyer_id, lock=True)
    counter = await session.scalar(
        select(CounterOffer).where(CounterOffer.id == counter_id, CounterOffer.bid_id == bid.id)
    )
    if counter is None:
        raise NotFound("No such counter-offer.")
    await _expired_now(session, bid)  # past the bid's time, whether or not the sweep ran
    if counter.status != "open" or counter.expires_at <= utcnow():
        raise Conflict(
            "This counter-offer is no longer open.",
            code="invalid_transition",
            current_status=counter.status if counter.status != "open" else "expired",
        )
    states.transition(bid.status, "accept")
    counter.status = "accepted"
    await _make_order(
        session,
        bid,
        quantity=counter.quantity,
        unit_price_fen=counter.unit_price_fen,
        terms=terms,
        user_id=user_id,
    )
    return bid


async def withdraw_bid(session: AsyncSession, *, bid_id: uuid.UUID, buyer_id: uuid.UUID) -> Bid:
    bid = await get_bid(session, bid_id=bid_id, buyer_id=buyer_id)
    if bid.kind == "auction":
        # the listing first, as the clearing locks it (then the bids): a cleared auction's
        # bids are final, and the two never wait on each other in opposite orders
        listing = await listings_service.get_listing(session, listing_id=bid.listing_id, lock=True)
        bid = await get_bid(session, bid_id=bid_id, buyer_id=buyer_id, lock=True)
        await session.refresh(bid)
        if listing.auction_closes_at is not None and listing.auction_closes_at <= utcnow():
            raise Conflict(
                "The auction has closed; its bids are final.",
                code="auction_closed",
                current_status=bid.status,
            )
    else:
        bid = await get_bid(session, bid_id=bid_id, buyer_id=buyer_id, lock=True)
        await session.refresh(bid)
    bid.status = states.transition(bid.status, "withdraw")
    bid.decided_at = bid.updated_at = utcnow()
    await _close_counters(session, bid, "declined")
    return bid


async def expire_bids(session: AsyncSession, *, limit: int = 200) -> int:
    """Expire the standing negotiation bids whose time has passed, the longest lapsed first,
    skipping those another worker holds; their buyers are told. Returns how many."""
    bids = list(
        await session.scalars(
            select(Bid)
            # open_until: expires_at of a standing (open or countered) negotiation bid
            .where(Bid.open_until <= utcnow())
            .order_by(Bid.open_until)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for bid in bids:
        bid.status = states.transition(bid.status, "expire")
        bid.decided_at = bid.updated_at = utcnow()
        await _close_counters(session, bid, "expired")
        listing = await listings_service.get_listing(session, listing_id=bid.listing_id)
        await notifications_service.notify(
            session,
            organisation_id=bid.buyer_id,
            kind="bid_expired",
            subject_type="bid",
            subject_id=bid.id,
            context={"title": listing.title_zh},
        )
    return len(bids)


# ---------------------------------------------------------------- auctions


async def auction_bids(session: AsyncSession, listing_id: uuid.UUID) -> list[Bid]:
    """Every bid of an auction in the clearing's ranking (price down, then placing order)."""
    rows = await session.scalars(
        select(Bid)
        .where(Bid.listing_id == listing_id, Bid.kind == "auction")
        .order_by(Bid.unit_price_fen.desc(), Bid.seq)
    )
    return list(rows)


async def auction_result(session: AsyncSession, listing_id: uuid.UUID) -> AuctionClearing | None:
    return await session.get(AuctionClearing, listing_id)


_BIDS_DECIDED = text("""
UPDATE bid
   SET status = d.status, filled_quantity = d.filled_quantity, order_id = d.order_id,
       outcome_reason = d.outcome_reason,
       decided_at = CAST(:decided_at AS timestamptz), updated_at = CAST(:decided_at AS timestamptz)
  FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:filled AS bigint[]),
              CAST(:order_ids AS uuid[]), CAST(:reasons AS text[]))
       AS d(id, status, filled_quantity, order_id, outcome_reason)
 WHERE bid.id = d.id
   AND bid.listing_id = :listing_id  -- the auction's bids only, not a scan of every bid
""")


class _AuctionBid(NamedTuple):
    """What the clearing reads of each open bid."""

    id: uuid.UUID
    buyer_id: uuid.UUID
    placed_by_id: uuid.UUID | None
    unit_price_fen: int
    quantity: int
    partial_ok: bool
    seq: int
    destination_code: str
    address: str
    contact_name: str
    contact_phone: str
    note: str | None


async def clear_auction(
    session: AsyncSession, *, listing_id: uuid.UUID, terms: orders_service.Terms
) -> AuctionClearing | None:
    """Clear a closed auction exactly once: the listing's row lock serialises racing workers
    and the clearing's primary key refuses a second result. Winners get orders at their own
    bid (pay-as-bid), losers are told why; None while bidding is still open.

    Set-based: every winner's order is placed by one `orders_service.place_agreed_orders`
    (the same orders `place_order` would make, a few statements for all), the bids are
    decided by one UPDATE and the buyers told by one `notify_many`."""
    with collector_paused():
        return await _clear_auction(session, listing_id=listing_id, terms=terms)


async def _clear_auction(
    session: AsyncSession, *, listing_id: uuid.UUID, terms: orders_service.Terms
) -> AuctionClearing | None:
    listing = await listings_service.get_listing(session, listing_id=listing_id, lock=True)
    done = await session.get(AuctionClearing, listing_id)
    if done is not None:
        return done
    if listing.sale_mode != "auction" or listing.auction_closes_at is None:
        raise Invalid.field("listing_id", "This listing is not an auction.")
    if listing.auction_closes_at > utcnow():
        return None
    rows = await session.execute(
        select(*(getattr(Bid, name) for name in _AuctionBid._fields))
        .where(Bid.listing_id == listing_id, Bid.kind == "auction", Bid.status == "open")
        .order_by(Bid.seq)
        # no row locks: placing and withdrawing an auction bid take the listing's lock,
        # which this clearing holds (locking thousands of bids only to update them
        # again costs a write per bid)
    )
    bids = list(map(_AuctionBid._make, rows))  # a Row's attributes cost ~0.5 µs each
    offered = listing.quantity_available
    outcomes = clearing.clear(
        [
            clearing.SealedBid(str(b.id), b.unit_price_fen, b.quantity, b.partial_ok, b.seq)
            for b in bids
        ],
        quantity=offered,
        reserve_price_fen=listing.reserve_price_fen,
    )
    ranked = sorted(
        zip(bids, outcomes, strict=True),
        key=lambda pair: (-pair[0].unit_price_fen, pair[0].seq),  # clearing.ranking_key
    )
    winners = [(bid, outcome) for bid, outcome in ranked if outcome.quantity > 0]
    placed = dict(
        zip(
            (bid.id for bid, _ in winners),
            await orders_service.place_agreed_orders(
                session,
                listing_id=listing_id,
                sales=[
                    orders_service.AgreedSale(
                        bid.buyer_id,
                        bid.placed_by_id,
                        outcome.quantity,
                        bid.unit_price_fen,
                        bid.destination_code,
                        bid.address,
                        bid.contact_name,
                        bid.contact_phone,
                        bid.note,
                    )
                    for bid, outcome in winners
                ],
                terms=terms,
                source="auction",
            ),
            strict=True,
        )
    )
    now = utcnow()
    title = listing.title_zh
    # every bid read is open: its next status by the transition table, once per outcome
    to_won, to_part, to_lost = (states.transition("open", e) for e in ("win", "win_part", "lose"))
    ids: list[uuid.UUID] = []
    statuses: list[str] = []
    filled: list[int] = []
    order_ids: list[uuid.UUID | None] = []
    reasons: list[str | None] = []
    drafts: list[notifications_service.Draft] = []
    allocated = revenue = won = 0
    # in placing order, which is the bids' order on disk: the UPDATE then visits each page of
    # the table once instead of at random (price order). Once an auction's bids outgrow
    # PostgreSQL's shared buffers that matters: 28 s instead of 40 s for a million bids
    for bid, outcome in zip(bids, outcomes, strict=True):
        order = placed.get(bid.id)
        ids.append(bid.id)
        if isinstance(order, orders_service.PlacedOrder):
            statuses.append(to_won if outcome.status == "won" else to_part)
            filled.append(outcome.quantity)
            order_ids.append(order.id)
            reasons.append(None)
            allocated += outcome.quantity
            revenue += outcome.amount_fen
            won += 1
            context = {
                "title": title,
                "quantity": outcome.quantity,
                "price": _yuan(bid.unit_price_fen),
            }
            drafts.append(
                notifications_service.Draft(bid.buyer_id, "auction_won", "order", order.id, context)
            )
        else:
            # a loser, or a winner who cannot buy (no longer verified, goods would spoil on
            # the way): told why; the units stay with the listing
            reason = (
                outcome.reason
                if order is None
                else f"Won, but the order could not be placed: {order}"
            )
            statuses.append(to_lost)
            filled.append(0)
            order_ids.append(None)
            reasons.append(reason)
            context = {"title": title, "reason": reason or ""}
            drafts.append(
                notifications_service.Draft(bid.buyer_id, "auction_lost", "bid", bid.id, context)
            )
    decided: dict[str, list[Any]] = {
        "ids": ids,
        "statuses": statuses,
        "filled": filled,
        "order_ids": order_ids,
        "reasons": reasons,
    }
    if bids:
        await session.execute(
            _BIDS_DECIDED, {**decided, "decided_at": now, "listing_id": listing_id}
        )
        _sync_loaded_bids(session, decided, now)
    # the cooperative hears once about the whole clearing (its orders are in its feed of
    # orders), the buyers each about their own bid
    due = next(
        (o.payment_due_at for o in placed.values() if isinstance(o, orders_service.PlacedOrder)),
        None,
    )
    drafts.append(
        notifications_service.Draft(
            organisation_id=listing.cooperative_id,
            kind="auction_cleared",
            subject_type="listing",
            subject_id=listing_id,
            context={
                "title": listing.title_zh,
                "bids": len(bids),
                "winners": won,
                "quantity": allocated,
                "revenue": _yuan(revenue),
                "due": due.astimezone(CHINA).strftime("%m-%d %H:%M") if due else "",
                "unsold": offered - allocated,
            },
        )
    )
    await notifications_service.notify_many(session, drafts)
    # the auction is over: what nobody won leaves the listing, which closes
    cooperative = await organisations_service.get_organisation(
        session, organisation_id=listing.cooperative_id
    )
    if listing.status != "closed":
        await listings_service.act(
            session,
            listing=listing,
            organisation=cooperative,
            event="close",
            user_id=None,
            auction_cleared=True,
        )
    result = AuctionClearing(
        listing_id=listing_id,
        quantity_offered=offered,
        quantity_allocated=allocated,
        revenue_fen=revenue,
        bids=len(bids),
        winners=won,
    )
    session.add(result)
    await session.flush()
    return result


def _sync_loaded_bids(
    session: AsyncSession, decided: dict[str, list[Any]], at: dt.datetime
) -> None:
    """Bids already loaded in the session take the decision written by the UPDATE as their
    stored state (not as a change to flush), so that nobody reads a stale `open` bid."""
    loaded = {obj.id: obj for obj in list(session.identity_map.values()) if isinstance(obj, Bid)}
    if not loaded:
        return
    for k, bid_id in enumerate(decided["ids"]):
        bid = loaded.get(bid_id)
        if bid is None:
            continue
        set_committed_value(bid, "status", decided["statuses"][k])
        set_committed_value(bid, "filled_quantity", decided["filled"][k])
        set_committed_value(bid, "order_id", decided["order_ids"][k])
        set_committed_value(bid, "outcome_reason", decided["reasons"][k])
        set_committed_value(bid, "decided_at", at)
        set_committed_value(bid, "updated_at", at)


async def due_auctions(session: AsyncSession, *, limit: int = 20) -> list[uuid.UUID]:
    """Auctions whose bidding has closed and that are not cleared yet."""
    return await listings_service.closed_auctions_without(
        session, cleared=select(AuctionClearing.listing_id), limit=limit
    )
