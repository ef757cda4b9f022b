"""Listings offered from lots: terms and lifecycle, mass balance against the lot, the one stock
ledger through which every quantity moves, and the lean public read of active listings."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, func, or_, select, text
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from market.calendar import CHINA, china_today
from market.catalog import service as catalog_service
from market.catalog.models import Certification, Product, ProductCategory
from market.db import utcnow
from market.errors import Conflict, Forbidden, Invalid, NotFound
from market.listings import states
from market.listings.models import STATUSES, Listing, ListingPriceTier, StockMovement
from market.organisations.models import Organisation
from market.pagination import PageParams, paginate
from market.regions import service as regions_service
from market.sourcing import service as sourcing_service
from market.sourcing.models import Lot

# ---------------------------------------------------------------- who may act


async def get_listing(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    cooperative_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Listing:
    """The listing as stored now (stock moves behind the ORM, so always re-read); NotFound
    when missing or, with cooperative_id, another cooperative's."""
    stmt = select(Listing).where(Listing.id == listing_id).execution_options(populate_existing=True)
    if cooperative_id is not None:
        stmt = stmt.where(Listing.cooperative_id == cooperative_id)
    if lock:
        stmt = stmt.with_for_update()
    listing = await session.scalar(stmt)
    if listing is None:
        raise NotFound("No such listing in this cooperative.")
    return listing


async def titles_of(
    session: AsyncSession, listing_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Chinese titles by listing id, in one query."""
    rows = await session.execute(
        select(Listing.id, Listing.title_zh).where(Listing.id.in_(set(listing_ids)))
    )
    return {listing_id: title for listing_id, title in rows}


async def tiers_of(
    session: AsyncSession, listing_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ListingPriceTier]]:
    """Each listing's price tiers by ascending min_quantity; every id given is a key."""
    out: dict[uuid.UUID, list[ListingPriceTier]] = {i: [] for i in listing_ids}
    if not out:
        return out
    rows = await session.scalars(
        select(ListingPriceTier)
        .where(ListingPriceTier.listing_id.in_(list(out)))
        .order_by(ListingPriceTier.listing_id, ListingPriceTier.min_quantity)
    )
    for tier in rows:
        out[tier.listing_id].append(tier)
    return out


async def certification_warnings(
    session: AsyncSession, listings: Sequence[Listing], today: dt.date | None = None
) -> dict[uuid.UUID, bool]:
    """True for each listing that claims a certificate that is expired or gone."""
    claimed = {cid for listing in listings for cid in listing.certification_ids}
    invalid = await catalog_service.invalid_certification_ids(session, list(claimed), today)
    return {
        listing.id: any(cid in invalid for cid in listing.certification_ids) for listing in listings
    }


# ---------------------------------------------------------------- terms


@dataclass
class _Problems:
    items: list[dict[str, str]]

    def add(self, field: str, message: str, code: str) -> None:
        self.items.append({"field": field, "message": message, "code": code})

    def raise_any(self) -> None:
        if not self.items:
            return
        detail = " ".join(f"{p['field']}: {p['message']}" for p in self.items)
        code = self.items[0]["code"] if len(self.items) == 1 else "invalid_listing"
        raise Invalid(
            detail,
            code=code,
            errors=[{"field": p["field"], "message": p["message"]} for p in self.items],
        )


def _check_tiers(problems: _Problems, terms: dict[str, Any]) -> None:
    tiers = terms["price_tiers"]
    if tiers and terms["sale_mode"] == "auction":
        problems.add(
            "price_tiers", "Auctions have no price tiers: the bids set the price.", "auction_tiers"
        )
        return
    min_order = terms["min_order_quantity"]
    previous_quantity, previous_price = min_order, terms["unit_price_fen"]
    for index, tier in enumerate(tiers):
        quantity, price = tier["min_quantity"], tier["unit_price_fen"]
        if quantity <= previous_quantity:
            what = (
                f"the minimum order quantity ({min_order})"
                if index == 0
                else f"the previous tier's min_quantity ({previous_quantity})"
            )
            problems.add(
                f"price_tiers.{index}.min_quantity",
                f"{quantity} must be greater than {what}.",
                "invalid_price_tiers",
            )
        if price >= previous_price:
            what = (
                f"the unit price ({previous_price} fen)"
                if index == 0
                else f"the previous tier's price ({previous_price} fen)"
            )
            problems.add(
                f"price_tiers.{index}.unit_price_fen",
                f"{price} fen must be lower than {what}: a larger quantity costs less per unit.",
                "invalid_price_tiers",
            )
        previous_quantity, previous_price = quantity, price


def _check_window(problems: _Problems, terms: dict[str, Any], now: dt.datetime) -> None:
    valid_from, valid_until = terms["valid_from"], terms["valid_until"]
    if valid_until is None:
        return
    if valid_until <= valid_from:
        problems.add("valid_until", "must be after valid_from.", "invalid_window")
    elif valid_until <= now:
        problems.add("valid_until", "must be in the future.", "invalid_window")


def _check_sale_mode(problems: _Problems, terms: dict[str, Any], now: dt.datetime) -> None:
    closes_at = terms["auction_closes_at"]
    if terms["sale_mode"] != "auction":
        if closes_at is not None:
            problems.add("auction_closes_at", "Only auctions have a close time.", "auction_only")
        if terms["reserve_price_fen"] is not None:
            problems.add("reserve_price_fen", "Only auctions have a reserve price.", "auction_only")
        return
    if closes_at is None:
        problems.add(
            "auction_closes_at", "An auction needs the time its bidding closes.", "auction_close"
        )
    elif closes_at <= now:
        problems.add("auction_closes_at", "must be in the future.", "auction_close")
    elif closes_at <= terms["valid_from"]:
        problems.add("auction_closes_at", "must be after valid_from.", "auction_close")
    elif terms["valid_until"] is not None and closes_at > terms["valid_until"]:
        problems.add(
            "auction_closes_at",
            "must not be after valid_until: the listing must still be open when bidding closes.",
            "auction_close",
        )


def _check_delivery(problems: _Problems, terms: dict[str, Any]) -> None:
    if terms["delivery_terms"] == "pickup" and not terms["pickup_hub"]:
        problems.add(
            "pickup_hub", "Pickup needs the hub where buyers collect the goods.", "pickup_hub"
        )
    if terms["delivery_terms"] == "delivered" and terms["pickup_hub"]:
        problems.add(
            "pickup_hub", "Only pickup has a hub; leave it out for delivered.", "pickup_hub"
        )


def _check_certifications(
    problems: _Problems,
    claimed: Sequence[uuid.UUID],
    certifications: Sequence[Certification],
    today: dt.date,
) -> None:
    own = {c.id: c for c in certifications}
    for index, cid in enumerate(claimed):
        certification = own.get(cid)
        if certification is None:
            problems.add(
                f"certification_ids.{index}",
                f"{cid} is not a certificate of this listing's product.",
                "unknown_certification",
            )
        elif not catalog_service.is_valid(certification, today):
            problems.add(
                f"certification_ids.{index}",
                f"Certificate {certification.certificate_number} expired on "
                f"{certification.valid_until.isoformat()}; it cannot be claimed.",
                "expired_certification",
            )


async def _product_certifications(session: AsyncSession, product: Product) -> list[Certification]:
    return (await catalog_service.certifications_of(session, [product.id]))[product.id]


# ---------------------------------------------------------------- mass balance


async def committed_base_quantity(session: AsyncSession, lot_id: uuid.UUID) -> int:
    """Base units of the lot committed to its listings: Σ quantity_listed × unit_size.

    Closing a listing moves its available rest out of quantity_listed, so a closed listing
    counts only what was reserved or sold from it."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Listing.quantity_listed * Listing.unit_size), 0)).where(
            Listing.lot_id == lot_id
        )
    )
    return int(total or 0)


async def _require_capacity(
    session: AsyncSession, lot: Lot, product: Product, *, units: int, unit_size: int
) -> None:
    """Refuse (409 mass_balance) when `units` more units of sale would exceed the lot. The
    caller holds the lot's row lock, so concurrent listings of one lot queue here."""
    base = catalog_service.base_unit(product)
    net = await sourcing_service.lot_net_quantity(session, lot.id)
    committed = await committed_base_quantity(session, lot.id)
    wanted = units * unit_size
    if committed + wanted > net:
        left = max(net - committed, 0)
        raise Conflict(
            f"Lot {lot.trace_code} holds {net} {base}, of which {committed} {base} are already "
            f"listed or sold, so {left} {base} ({left // unit_size} {product.unit}) are left; "
            f"this needs {wanted} {base} ({units} {product.unit}).",
            code="mass_balance",
        )


# ---------------------------------------------------------------- the stock ledger

# kind -> (change of listed, available, reserved, sold per unit of the movement's quantity,
#          the sign the quantity must have: 1, -1, or 0 for either)
_MOVES: dict[str, tuple[tuple[int, int, int, int], int]] = {
    "list": ((1, 1, 0, 0), 1),
    "adjust": ((1, 1, 0, 0), 0),
    "close": ((1, 1, 0, 0), -1),
    "reserve": ((0, 1, -1, 0), -1),
    "release": ((0, 1, -1, 0), 1),
    "sell": ((0, 0, 1, -1), -1),
}
OPEN_STATUSES = tuple(s for s in STATUSES if states.accepts_stock_changes(s))


def _in_list(statuses: dict[str, str]) -> str:
    return ", ".join(f"'{s}'" for s in sorted(statuses))


# The status follows the stock in the same UPDATE, from the transition table.
_SETTLE = f"""
    CASE
        WHEN status IN ({_in_list(states.TRANSITIONS["sell_out"])})
             AND quantity_available + :d_available = 0 THEN 'sold_out'
        WHEN status IN ({_in_list(states.TRANSITIONS["restock"])})
             AND quantity_available + :d_available > 0 THEN 'active'
        ELSE status
    END"""

# statement time, not transaction start: a listing created earlier in the same transaction
# (valid_from = the clock then) is already open
_OPEN_NOW = (
    "AND valid_from <= statement_timestamp() "
    "AND (valid_until IS NULL OR valid_until > statement_timestamp())"
)

_MOVE = """
WITH moved AS (
    UPDATE listing
       SET quantity_listed = quantity_listed + :d_listed,
           quantity_available = quantity_available + :d_available,
           quantity_reserved = quantity_reserved + :d_reserved,
           quantity_sold = quantity_sold + :d_sold,
           status = {settle},
           updated_at = now()
     WHERE id = :listing_id AND status = ANY(CAST(:statuses AS text[])) {open_now}
 RETURNING id, quantity_listed, quantity_available, quantity_reserved, quantity_sold, status
), movement AS (
    INSERT INTO stock_movement
           (listing_id, kind, quantity, available_after, reason, reference, created_by_id)
    SELECT id, CAST(:kind AS text), CAST(:quantity AS bigint), quantity_available,
           CAST(:reason AS text), CAST(:reference AS text), CAST(:user_id AS uuid)
      FROM moved
 RETURNING id
)
SELECT moved.*, movement.id AS movement_id FROM moved, movement
"""
MOVE_SQL = text(_MOVE.format(settle=_SETTLE, open_now=""))
MOVE_OPEN_NOW_SQL = text(_MOVE.format(settle=_SETTLE, open_now=_OPEN_NOW))


@dataclass(frozen=True)
class Stock:
    """A listing's stock right after a movement, and the movement's id."""

    listing_id: uuid.UUID
    listed: int
    available: int
    reserved: int
    sold: int
    status: str
    movement_id: int


def _constraint(exc: IntegrityError) -> str:
    cause = getattr(exc.orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None)
    return str(name) if name else str(exc.orig)


async def _stock_problem(
    session: AsyncSession, listing_id: uuid.UUID, kind: str, quantity: int, constraint: str
) -> Conflict:
    listing = await get_listing(session, listing_id=listing_id)
    amount = abs(quantity)
    if "available_not_negative" in constraint:
        what = "reserved" if kind == "reserve" else "removed"
        return Conflict(
            f"Only {listing.quantity_available} units of this listing are available, so "
            f"{amount} cannot be {what} ({listing.quantity_reserved} are reserved, "
            f"{listing.quantity_sold} sold).",
            code="insufficient_stock",
        )
    if "reserved_not_negative" in constraint:
        return Conflict(
            f"Only {listing.quantity_reserved} units are reserved; {amount} cannot be "
            f"{'released' if kind == 'release' else 'sold'}.",
            code="insufficient_reserved",
        )
    return Conflict(  # pragma: no cover - the other CHECKs cannot fail through move()
        f"This stock movement breaks a rule of the listing ({constraint}).",
        code="stock_conflict",
    )


async def _refusal(
    session: AsyncSession, listing_id: uuid.UUID, kind: str, statuses: Sequence[str]
) -> Exception:
    """Why the UPDATE matched no row: no listing, a status that refuses the movement, or
    (for reservations) outside the listing's window."""
    listing = await get_listing(session, listing_id=listing_id)
    status = listing.status
    if kind == "reserve" and status == "sold_out":
        return Conflict(
            "This listing is sold out: nothing is available.", code="insufficient_stock"
        )
    if status not in statuses:
        if status == "closed":
            return Conflict(
                "This listing is closed; its stock cannot change.", code="listing_closed"
            )
        return Conflict(
            f"This listing is {status.replace('_', ' ')}; only active listings can be reserved.",
            code="listing_not_active",
        )
    return Conflict(
        "This listing is outside its validity window "
        f"({listing.valid_from.isoformat()} to "
        f"{listing.valid_until.isoformat() if listing.valid_until else 'open'}).",
        code="listing_not_open",
    )


async def move(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    kind: str,
    quantity: int,
    reason: str,
    reference: str | None = None,
    user_id: uuid.UUID | None = None,
    statuses: Sequence[str] = OPEN_STATUSES,
    open_now: bool = False,
) -> Stock:
    """The one way stock changes: one UPDATE … RETURNING on the listing row (its CHECKs keep
    every figure non-negative and balanced) and one stock_movement row, in one statement.

    `quantity` is the signed change of availability in units of sale (for `sell`, of the
    reserved quantity). `statuses` are those in which the movement is allowed; `open_now`
    also requires the listing's window to be open. A refusal leaves the caller's
    transaction usable (the statement runs in a savepoint)."""
    deltas, sign = _MOVES[kind]
    if quantity == 0 or (sign and (quantity > 0) != (sign > 0)):
        raise ValueError(f"a {kind} movement cannot have quantity {quantity}")
    d_listed, d_available, d_reserved, d_sold = (d * quantity for d in deltas)
    params = {
        "listing_id": listing_id,
        "d_listed": d_listed,
        "d_available": d_available,
        "d_reserved": d_reserved,
        "d_sold": d_sold,
        "statuses": list(statuses),
        "kind": kind,
        "quantity": quantity,
        "reason": reason,
        "reference": reference,
        "user_id": user_id,
    }
    try:
        async with session.begin_nested():
            result = await session.execute(MOVE_OPEN_NOW_SQL if open_now else MOVE_SQL, params)
            row = result.one_or_none()
    except IntegrityError as exc:
        raise await _stock_problem(session, listing_id, kind, quantity, _constraint(exc)) from None
    if row is None:
        raise await _refusal(session, listing_id, kind, statuses)
    return Stock(
        listing_id=row.id,
        listed=row.quantity_listed,
        available=row.quantity_available,
        reserved=row.quantity_reserved,
        sold=row.quantity_sold,
        status=row.status,
        movement_id=row.movement_id,
    )


def _positive(quantity: int) -> None:
    if quantity <= 0:
        raise Invalid.field("quantity", "The quantity must be a positive number of units.")


async def reserve(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    quantity: int,
    reason: str,
    reference: str | None = None,
    user_id: uuid.UUID | None = None,
    check_window: bool = True,
) -> Stock:
    """Hold `quantity` units for a buyer: available → reserved. Only active listings, and
    (unless `check_window` is off, e.g. clearing an auction that just closed) only within
    their window. 409 insufficient_stock when fewer are available: nothing is oversold."""
    _positive(quantity)
    # a share lock on the cooperative: a rejection (which locks it for update) cannot slip
    # in between this check and the reservation
    verified = await session.scalar(
        select(Organisation.verification_status == "verified")
        .join(Listing, Listing.cooperative_id == Organisation.id)
        .where(Listing.id == listing_id)
        .with_for_update(read=True, of=Organisation)
    )
    if verified is False:
        raise Conflict(
            "The cooperative of this listing is not verified by the platform at the moment; "
            "its listings cannot be bought.",
            code="cooperative_not_verified",
        )
    return await move(
        session,
        listing_id=listing_id,
        kind="reserve",
        quantity=-quantity,
        reason=reason,
        reference=reference,
        user_id=user_id,
        statuses=("active",),
        open_now=check_window,
    )


# Several reservations of one listing in one statement: the listing row moves once by their
# sum, and each gets its own `reserve` movement, in the given order, with the availability
# that followed it (as if they had been reserved one after another).
_RESERVE_MANY = """
WITH moved AS (
    UPDATE listing
       SET quantity_available = quantity_available + :d_available,
           quantity_reserved = quantity_reserved - :d_available,
           status = {settle},
           updated_at = now()
     WHERE id = :listing_id AND status = 'active' {open_now}
 RETURNING id, quantity_listed, quantity_available, quantity_reserved, quantity_sold, status
), wanted AS (
    SELECT w.quantity, w.reason, w.reference, w.user_id, w.ord,
           sum(w.quantity) OVER (ORDER BY w.ord) AS taken
      FROM unnest(CAST(:quantities AS bigint[]), CAST(:reasons AS text[]),
                  CAST(:references AS text[]), CAST(:user_ids AS uuid[]))
           WITH ORDINALITY AS w(quantity, reason, reference, user_id, ord)
), movement AS (
    INSERT INTO stock_movement
           (listing_id, kind, quantity, available_after, reason, reference, created_by_id)
    SELECT moved.id, 'reserve', -wanted.quantity,
           moved.quantity_available - :d_available - wanted.taken,
           wanted.reason, wanted.reference, wanted.user_id
      FROM moved, wanted
     ORDER BY wanted.ord
 RETURNING id
)
SELECT moved.*, (SELECT max(id) FROM movement) AS movement_id FROM moved
"""
RESERVE_MANY_SQL = text(_RESERVE_MANY.format(settle=_SETTLE, open_now=""))
RESERVE_MANY_OPEN_NOW_SQL = text(_RESERVE_MANY.format(settle=_SETTLE, open_now=_OPEN_NOW))


@dataclass(frozen=True)
class Reservation:
    """One of several reservations of a listing made at once (see `reserve_many`)."""

    quantity: int
    reason: str
    reference: str | None = None
    user_id: uuid.UUID | None = None


async def reserve_many(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    reservations: Sequence[Reservation],
    check_window: bool = True,
) -> Stock:
    """`reserve` for several reservations of one listing at once, all or none: the ledger gets
    one `reserve` movement per reservation, in the given order, exactly as that many calls
    of `reserve` would write them (each with the availability after it), and the listing
    moves once by their sum. The same checks and refusals as `reserve`, for the sum; the
    returned stock is the listing's after the last one."""
    if not reservations:
        raise ValueError("reserve_many needs at least one reservation")
    for reservation in reservations:
        _positive(reservation.quantity)
    verified = await session.scalar(
        select(Organisation.verification_status == "verified")
        .join(Listing, Listing.cooperative_id == Organisation.id)
        .where(Listing.id == listing_id)
        .with_for_update(read=True, of=Organisation)
    )
    if verified is False:
        raise Conflict(
            "The cooperative of this listing is not verified by the platform at the moment; "
            "its listings cannot be bought.",
            code="cooperative_not_verified",
        )
    total = sum(r.quantity for r in reservations)
    params = {
        "listing_id": listing_id,
        "d_available": -total,
        "quantities": [r.quantity for r in reservations],
        "reasons": [r.reason for r in reservations],
        "references": [r.reference for r in reservations],
        "user_ids": [r.user_id for r in reservations],
    }
    try:
        async with session.begin_nested():
            result = await session.execute(
                RESERVE_MANY_OPEN_NOW_SQL if check_window else RESERVE_MANY_SQL, params
            )
            row = result.one_or_none()
    except IntegrityError as exc:
        raise await _stock_problem(
            session, listing_id, "reserve", -total, _constraint(exc)
        ) from None
    if row is None:
        raise await _refusal(session, listing_id, "reserve", ("active",))
    return Stock(
        listing_id=row.id,
        listed=row.quantity_listed,
        available=row.quantity_available,
        reserved=row.quantity_reserved,
        sold=row.quantity_sold,
        status=row.status,
        movement_id=row.movement_id,
    )


async def release(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    quantity: int,
    reason: str,
    reference: str | None = None,
    user_id: uuid.UUID | None = None,
) -> Stock:
    """Give reserved units back: reserved → available. On a closed listing they leave the
    stock straight away (a second, `close`, movement), since closed is final."""
    _positive(quantity)
    stock = await move(
        session,
        listing_id=listing_id,
        kind="release",
        quantity=quantity,
        reason=reason,
        reference=reference,
        user_id=user_id,
        statuses=STATUSES,
    )
    if stock.status == "closed" and stock.available > 0:
        stock = await move(
            session,
            listing_id=listing_id,
            kind="close",
            quantity=-stock.available,
            reason="released on a closed listing: the units leave the stock",
            reference=reference,
            user_id=user_id,
            statuses=("closed",),
        )
    return stock


async def sell(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    quantity: int,
    reason: str,
    reference: str | None = None,
    user_id: uuid.UUID | None = None,
) -> Stock:
    """Reserved units are sold (reserved → sold); availability does not change. Allowed in
    every status, so that orders placed before a listing closed still complete."""
    _positive(quantity)
    return await move(
        session,
        listing_id=listing_id,
        kind="sell",
        quantity=-quantity,
        reason=reason,
        reference=reference,
        user_id=user_id,
        statuses=STATUSES,
    )


async def adjust(
    session: AsyncSession,
    *,
    listing: Listing,
    quantity: int,
    reason: str,
    reference: str | None = None,
    user_id: uuid.UUID | None = None,
) -> tuple[Stock, StockMovement]:
    """The cooperative changes what is offered (signed units of sale). Upward, the lot is
    locked and must hold the extra units (409 mass_balance); downward, at most what is
    available can be removed (409 insufficient_stock)."""
    if quantity == 0:
        raise Invalid.field("quantity", "An adjustment of 0 changes nothing.")
    if not states.accepts_stock_changes(listing.status):
        raise Conflict("This listing is closed; its stock cannot change.", code="listing_closed")
    if quantity < 0 and _auction_running(listing):
        # what buyers bid on stays on offer until the clearing: taken away, every sealed bid
        # would lose to "sold out", which would not be true
        raise Conflict(
            "A published auction's quantity cannot be reduced: buyers are bidding on it until "
            "its clearing. More units can be added.",
            code="auction_running",
        )
    if quantity > 0:
        # lot before listing, the order every writer takes the two locks in
        lot = await sourcing_service.get_lot(session, lot_id=listing.lot_id, lock=True)
        product = await catalog_service.get_product(session, product_id=listing.product_id)
        await _require_capacity(session, lot, product, units=quantity, unit_size=listing.unit_size)
    stock = await move(
        session,
        listing_id=listing.id,
        kind="adjust",
        quantity=quantity,
        reason=reason,
        reference=reference,
        user_id=user_id,
    )
    movement = await session.get(StockMovement, stock.movement_id)
    assert movement is not None
    return stock, movement


async def list_movements(
    session: AsyncSession, *, listing_id: uuid.UUID, page: PageParams
) -> tuple[list[StockMovement], str | None]:
    stmt = select(StockMovement).where(StockMovement.listing_id == listing_id)
    return await paginate(session, stmt, page, [StockMovement.id])


# ---------------------------------------------------------------- listings


async def create_listing(
    session: AsyncSession,
    *,
    cooperative_id: uuid.UUID,
    data: dict[str, Any],
    user_id: uuid.UUID | None,
) -> Listing:
    """A draft listing of `quantity` units of sale from one of the cooperative's lots."""
    try:
        lot = await sourcing_service.get_lot(
            session, lot_id=data["lot_id"], cooperative_id=cooperative_id, lock=True
        )
    except NotFound:
        raise Invalid.field(
            "lot_id", "No such lot in this cooperative.", code="unknown_lot"
        ) from None
    product = await catalog_service.get_product(session, product_id=lot.product_id)
    now = utcnow()
    terms = {**data, "valid_from": data.get("valid_from") or now}
    terms["price_tiers"] = [dict(t) for t in terms.get("price_tiers") or []]
    problems = _Problems([])
    _check_tiers(problems, terms)
    _check_window(problems, terms, now)
    _check_sale_mode(problems, terms, now)
    _check_delivery(problems, terms)
    if terms["min_order_quantity"] > terms["quantity"]:
        problems.add(
            "min_order_quantity",
            f"{terms['min_order_quantity']} is more than the {terms['quantity']} units offered.",
            "min_order_too_large",
        )
    _check_certifications(
        problems,
        terms["certification_ids"],
        await _product_certifications(session, product),
        china_today(),
    )
    problems.raise_any()

    unit_size = catalog_service.unit_size(product)
    await _require_capacity(session, lot, product, units=terms["quantity"], unit_size=unit_size)
    listing = Listing(
        cooperative_id=cooperative_id,
        lot_id=lot.id,
        product_id=product.id,
        title_zh=terms.get("title_zh") or product.name_zh,
        title_en=terms.get("title_en"),
        description=terms.get("description"),
        sale_mode=terms["sale_mode"],
        status="draft",
        unit_price_fen=terms["unit_price_fen"],
        unit_size=unit_size,
        min_order_quantity=terms["min_order_quantity"],
        quantity_listed=0,  # the `list` movement below brings the stock in
        quantity_available=0,
        quantity_reserved=0,
        quantity_sold=0,
        delivery_terms=terms["delivery_terms"],
        pickup_hub=terms.get("pickup_hub"),
        valid_from=terms["valid_from"],
        valid_until=terms.get("valid_until"),
        auction_closes_at=terms.get("auction_closes_at"),
        reserve_price_fen=terms.get("reserve_price_fen"),
        certification_ids=list(terms["certification_ids"]),
    )
    session.add(listing)
    await session.flush()
    for tier in terms["price_tiers"]:
        session.add(ListingPriceTier(listing_id=listing.id, **tier))
    await session.flush()
    await move(
        session,
        listing_id=listing.id,
        kind="list",
        quantity=terms["quantity"],
        reason=f"listed from lot {lot.trace_code}",
        reference=lot.trace_code,
        user_id=user_id,
    )
    return await get_listing(session, listing_id=listing.id)


_NOT_NULL = ("title_zh", "unit_price_fen", "price_tiers", "min_order_quantity", "valid_from")


async def update_listing(
    session: AsyncSession, *, listing: Listing, changes: dict[str, Any]
) -> Listing:
    """Apply a PATCH of terms (never the quantity: that is a stock adjustment)."""
    listing = await get_listing(session, listing_id=listing.id, lock=True)
    if listing.status == "closed":
        raise Conflict("This listing is closed; it cannot change.", code="listing_closed")
    if not changes:
        return listing
    problems = _Problems([])
    for name in (*_NOT_NULL, "certification_ids"):
        if name in changes and changes[name] is None:
            problems.add(name, "cannot be null; leave it out to keep it.", "not_null")
    problems.raise_any()
    tiers = await tiers_of(session, [listing.id])
    now = utcnow()
    terms: dict[str, Any] = {
        "unit_price_fen": listing.unit_price_fen,
        "min_order_quantity": listing.min_order_quantity,
        "sale_mode": listing.sale_mode,
        "valid_from": listing.valid_from,
        "valid_until": listing.valid_until,
        "price_tiers": [
            {"min_quantity": t.min_quantity, "unit_price_fen": t.unit_price_fen}
            for t in tiers[listing.id]
        ],
        **changes,
    }
    terms["price_tiers"] = [dict(t) for t in terms["price_tiers"]]
    _check_tiers(problems, terms)
    if "valid_from" in changes or "valid_until" in changes:
        _check_window(problems, terms, now)
        closes_at, valid_until = listing.auction_closes_at, terms["valid_until"]
        outside = closes_at is not None and (
            closes_at <= terms["valid_from"]
            or (valid_until is not None and closes_at > valid_until)
        )
        if closes_at is not None and outside:
            problems.add(
                "valid_until" if "valid_until" in changes else "valid_from",
                f"The window must contain the auction's close time ({closes_at.isoformat()}).",
                "invalid_window",
            )
    if "certification_ids" in changes:
        product = await catalog_service.get_product(session, product_id=listing.product_id)
        _check_certifications(
            problems,
            changes["certification_ids"],
            await _product_certifications(session, product),
            china_today(),
        )
    problems.raise_any()

    for name, value in changes.items():
        if name != "price_tiers":
            setattr(listing, name, list(value) if name == "certification_ids" else value)
    if "price_tiers" in changes:
        # through the ORM: the loaded tiers leave the identity map before new ones with the
        # same keys arrive
        for old_tier in tiers[listing.id]:
            await session.delete(old_tier)
        await session.flush()
        for tier in terms["price_tiers"]:
            session.add(ListingPriceTier(listing_id=listing.id, **tier))
    listing.updated_at = now
    await session.flush()
    return listing


async def _check_publishable(
    session: AsyncSession, listing: Listing, organisation: Organisation
) -> None:
    if organisation.verification_status != "verified":
        raise Forbidden(
            f"{organisation.name_zh} is not verified yet; listings are published after the "
            "platform verifies the cooperative.",
            code="not_verified",
        )
    now = utcnow()
    if listing.valid_until is not None and listing.valid_until <= now:
        raise Conflict(
            f"This listing's window ended at {listing.valid_until.isoformat()}; "
            "change valid_until first.",
            code="window_over",
        )
    if listing.auction_closes_at is not None and listing.auction_closes_at <= now:
        raise Conflict(
            f"This auction's bidding closed at {listing.auction_closes_at.isoformat()}.",
            code="auction_closed",
        )
    invalid = await catalog_service.invalid_certification_ids(
        session, list(listing.certification_ids)
    )
    if invalid:
        raise Conflict(
            "This listing claims certificates that have expired or no longer exist "
            f"({', '.join(sorted(str(i) for i in invalid))}); remove them from "
            "certification_ids first.",
            code="certification_expired",
        )


def _auction_running(listing: Listing) -> bool:
    """A published auction not yet cleared (its clearing closes it)."""
    return (
        listing.sale_mode == "auction"
        and listing.published_at is not None
        and listing.auction_closes_at is not None
        and listing.status != "closed"
    )


async def act(
    session: AsyncSession,
    *,
    listing: Listing,
    organisation: Organisation,
    event: str,
    user_id: uuid.UUID | None,
    auction_cleared: bool = False,
) -> Listing:
    """publish | pause | resume | close, as the transition table allows. Closing moves the
    available rest out of the listing (a `close` movement); reserved units stay to be sold
    or released.

    A published auction runs until its clearing, which closes it (`auction_cleared`): paused
    or closed before, its sealed bids would stay open and its winners could get nothing."""
    listing = await get_listing(session, listing_id=listing.id, lock=True)
    closes_at = listing.auction_closes_at
    if (
        event in ("pause", "close")
        and closes_at
        and _auction_running(listing)
        and not auction_cleared
    ):
        raise Conflict(
            "A published auction cannot be paused or closed: its bidding runs until "
            f"{closes_at.astimezone(CHINA):%Y-%m-%d %H:%M} (China time), then "
            "the platform clears it and closes the listing.",
            code="auction_running",
        )
    new_status = states.act(listing.status, event, listing.quantity_available)
    if event == "publish":
        await _check_publishable(session, listing, organisation)
        listing.published_at = listing.published_at or utcnow()
    listing.status = new_status
    listing.updated_at = utcnow()
    await session.flush()
    if new_status == "closed" and listing.quantity_available > 0:
        await move(
            session,
            listing_id=listing.id,
            kind="close",
            quantity=-listing.quantity_available,
            reason="listing closed: the available rest leaves the stock",
            user_id=user_id,
            statuses=("closed",),
        )
    return await get_listing(session, listing_id=listing.id)


async def list_listings(
    session: AsyncSession,
    *,
    cooperative_id: uuid.UUID,
    page: PageParams,
    status: str | None = None,
    lot_id: uuid.UUID | None = None,
) -> tuple[list[Listing], str | None]:
    stmt = select(Listing).where(Listing.cooperative_id == cooperative_id)
    if status is not None:
        stmt = stmt.where(Listing.status == status)
    if lot_id is not None:
        stmt = stmt.where(Listing.lot_id == lot_id)
    return await paginate(session, stmt, page, [Listing.created_at, Listing.id], descending=True)


# ---------------------------------------------------------------- auctions


async def extend_auction(
    session: AsyncSession, *, listing: Listing, minutes: int, max_extensions: int
) -> bool:
    """Anti-sniping: a bid in the last minutes moves the close `minutes` later, at most
    `max_extensions` times. The caller holds the listing's lock. Returns whether it did."""
    if listing.auction_closes_at is None or listing.auction_extensions >= max_extensions:
        return False
    listing.auction_closes_at += dt.timedelta(minutes=minutes)
    listing.auction_extensions += 1
    if listing.valid_until is not None and listing.valid_until < listing.auction_closes_at:
        listing.valid_until = listing.auction_closes_at
    listing.updated_at = utcnow()
    await session.flush()
    return True


async def closed_auctions_without(
    session: AsyncSession, *, cleared: Any, limit: int
) -> list[uuid.UUID]:
    """Auction listings whose bidding has closed, not among `cleared` (a subquery of ids)."""
    rows = await session.scalars(
        select(Listing.id)
        .where(
            Listing.sale_mode == "auction",
            Listing.auction_closes_at <= func.now(),
            Listing.status.in_(("active", "sold_out", "paused")),
            Listing.id.not_in(cleared),
        )
        .order_by(Listing.auction_closes_at)
        .limit(limit)
    )
    return list(rows)


# ---------------------------------------------------------------- public reads


def publicly_visible() -> ColumnElement[bool]:
    """Active, within its window, from a cooperative the platform (still) verifies: what the
    public and buyers see."""
    verified = select(Organisation.id).where(Organisation.verification_status == "verified")
    return and_(
        Listing.status == "active",
        Listing.cooperative_id.in_(verified),
        Listing.valid_from <= func.statement_timestamp(),
        or_(Listing.valid_until.is_(None), Listing.valid_until > func.statement_timestamp()),
    )


# One statement for the whole public document: the hot read path. Ids come back as text, ready
# for JSON. The poor-household share is the sourcing service's arithmetic (LOT_SHARES_SQL
# summed over households is the same sum).
_PUBLIC = """
SELECT CAST(l.id AS text) AS id, l.title_zh, l.title_en, l.description, l.sale_mode,
       l.unit_price_fen, l.min_order_quantity, l.quantity_available, l.auction_closes_at,
       l.delivery_terms, l.pickup_hub, l.valid_from, l.valid_until, l.published_at,
       cardinality(l.certification_ids) AS claimed,
       CAST(o.id AS text) AS cooperative_id, o.name_zh AS cooperative_name_zh,
       o.name_en AS cooperative_name_en,
       r.code AS county_code, r.name_zh AS county_name_zh, r.level AS region_level,
       r.latitude, r.longitude, r.is_poverty_county,
       pa.level AS parent_level, pa.name_zh AS parent_name_zh, pb.name_zh AS grandparent_name_zh,
       l.version,
       CAST(p.id AS text) AS product_id, p.name_zh AS product_name_zh, p.name_en AS product_name_en,
       p.category_code, p.regional_brand, p.unit, p.box_net_weight_g, p.storage_class,
       p.shelf_life_days,
       lot.trace_code,
       t.tier_quantities, t.tier_prices,
       c.cert_ids, c.cert_kinds, c.cert_numbers, c.cert_issuers, c.cert_valid_until,
       c.cert_valid,
       s.value_fen, s.poor_value_fen
  FROM listing l
  JOIN organisation o ON o.id = l.cooperative_id
  JOIN region r ON r.code = o.region_code
  LEFT JOIN region pa ON pa.code = r.parent_code
  LEFT JOIN region pb ON pb.code = pa.parent_code
  JOIN product p ON p.id = l.product_id
  JOIN lot ON lot.id = l.lot_id
  LEFT JOIN LATERAL (
      SELECT array_agg(min_quantity ORDER BY min_quantity) AS tier_quantities,
             array_agg(unit_price_fen ORDER BY min_quantity) AS tier_prices
        FROM listing_price_tier WHERE listing_id = l.id
  ) t ON true
  LEFT JOIN LATERAL (
      SELECT array_agg(CAST(id AS text) ORDER BY valid_until DESC, id) AS cert_ids,
             array_agg(kind ORDER BY valid_until DESC, id) AS cert_kinds,
             array_agg(certificate_number ORDER BY valid_until DESC, id) AS cert_numbers,
             array_agg(issuer ORDER BY valid_until DESC, id) AS cert_issuers,
             array_agg(valid_until ORDER BY valid_until DESC, id) AS cert_valid_until,
             count(*) FILTER (WHERE valid_until >= CAST(:today AS date)) AS cert_valid
        FROM certification WHERE id = ANY(l.certification_ids)
  ) c ON true
  LEFT JOIN LATERAL (
      -- the lot share by the same rule as sourcing.service.LOT_SHARES_SQL
      SELECT sum(rec.amount_fen) AS value_fen,
             sum(rec.amount_fen) FILTER (WHERE ps.household_id IS NOT NULL) AS poor_value_fen
        FROM sourcing_record rec
        LEFT JOIN poor_status_period ps
          ON ps.household_id = rec.household_id
         AND ps.valid_from <= rec.purchase_date
         AND (ps.valid_until IS NULL OR rec.purchase_date <= ps.valid_until)
       WHERE rec.lot_id = l.lot_id
  ) s ON true
 WHERE {where}
   AND o.verification_status = 'verified'
   AND {visible}
"""
_ON_SALE_NOW = """l.status = 'active' AND l.valid_from <= statement_timestamp()
   AND (l.valid_until IS NULL OR l.valid_until > statement_timestamp())"""
PUBLIC_ONE_SQL = text(
    _PUBLIC.format(where="l.id = CAST(:listing_id AS uuid)", visible=_ON_SALE_NOW)
)
PUBLIC_MANY_SQL = text(
    _PUBLIC.format(where="l.id = ANY(CAST(:listing_ids AS uuid[]))", visible=_ON_SALE_NOW)
)
# the same rows for a sale agreed earlier (an accepted bid, a cleared auction): the listing
# may have left its window or closed its bidding since, but not been withdrawn
AGREED_MANY_SQL = text(
    _PUBLIC.format(where="l.id = ANY(CAST(:listing_ids AS uuid[]))", visible="l.status = 'active'")
)
# PUBLIC_ONE_SQL compiled once by SQLAlchemy's asyncpg dialect: the very string (and the order
# of its $n parameters) that the engine sends for it, for running it on asyncpg directly
_PUBLIC_ONE_COMPILED = PUBLIC_ONE_SQL.compile(dialect=postgresql_asyncpg.dialect())
PUBLIC_ONE_ASYNCPG = str(_PUBLIC_ONE_COMPILED)
PUBLIC_ONE_PARAMS: tuple[str, ...] = tuple(_PUBLIC_ONE_COMPILED.positiontup or ())


def public_document(row: Mapping[Any, Any], today: dt.date) -> dict[str, Any]:
    """The public listing as plain JSON-ready data (see schemas.PublicListingRead), from a row
    by column name: a SQLAlchemy RowMapping or an asyncpg Record alike."""
    certifications = []
    if row["cert_ids"]:
        for cid, kind, number, issuer, valid_until in zip(
            row["cert_ids"],
            row["cert_kinds"],
            row["cert_numbers"],
            row["cert_issuers"],
            row["cert_valid_until"],
            strict=True,
        ):
            certifications.append(
                {
                    "id": cid,
                    "kind": kind,
                    "certificate_number": number,
                    "issuer": issuer,
                    "valid_until": valid_until,
                    "is_valid": valid_until >= today,
                }
            )
    tiers = []
    if row["tier_quantities"]:
        tiers = [
            {"min_quantity": q, "unit_price_fen": p}
            for q, p in zip(row["tier_quantities"], row["tier_prices"], strict=True)
        ]
    return {
        "id": row["id"],
        "title_zh": row["title_zh"],
        "title_en": row["title_en"],
        "description": row["description"],
        "cooperative": {
            "id": row["cooperative_id"],
            "name_zh": row["cooperative_name_zh"],
            "name_en": row["cooperative_name_en"],
        },
        "county": {"code": row["county_code"], "name_zh": row["county_name_zh"]},
        "product": {
            "id": row["product_id"],
            "name_zh": row["product_name_zh"],
            "name_en": row["product_name_en"],
            "category_code": row["category_code"],
            "regional_brand": row["regional_brand"],
            "unit": row["unit"],
            "box_net_weight_g": row["box_net_weight_g"],
            "storage_class": row["storage_class"],
            "shelf_life_days": row["shelf_life_days"],
        },
        "sale_mode": row["sale_mode"],
        "unit_price_fen": row["unit_price_fen"],
        "price_tiers": tiers,
        "min_order_quantity": row["min_order_quantity"],
        "quantity_available": row["quantity_available"],
        "auction_closes_at": row["auction_closes_at"],
        "delivery_terms": row["delivery_terms"],
        "pickup_hub": row["pickup_hub"],
        "valid_from": row["valid_from"],
        "valid_until": row["valid_until"],
        "published_at": row["published_at"],
        "certifications": certifications,
        "certification_warning": row["claimed"] > (row["cert_valid"] or 0),
        "trace_code": row["trace_code"],
        "poor_share_bp": sourcing_service.share_bp(
            int(row["poor_value_fen"] or 0), int(row["value_fen"] or 0)
        ),
    }


class RowFetcher(Protocol):
    """What the hot path needs of asyncpg: a Pool or a Connection."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...


async def public_listing(
    db: AsyncSession | AsyncConnection | RowFetcher, listing_id: uuid.UUID
) -> dict[str, Any]:
    """An active listing for anyone, in one Core statement (no ORM objects); NotFound for
    anything not publicly visible. Takes a session or a connection, or on the hot path an
    asyncpg pool or connection, which runs the same statement in its compiled $1/$2 form."""
    today = china_today()
    row: Mapping[Any, Any] | None
    if isinstance(db, AsyncSession | AsyncConnection):
        connection = await db.connection() if isinstance(db, AsyncSession) else db
        result = await connection.execute(
            PUBLIC_ONE_SQL, {"listing_id": listing_id, "today": today}
        )
        row = result.mappings().one_or_none()
    else:
        values = {"listing_id": listing_id, "today": today}
        row = await db.fetchrow(PUBLIC_ONE_ASYNCPG, *[values[p] for p in PUBLIC_ONE_PARAMS])
    if row is None:
        raise NotFound("No such listing, or it is not on sale now.")
    return public_document(row, today)


async def public_rows(
    conn: AsyncConnection, listing_ids: Sequence[uuid.UUID], today: dt.date
) -> list[dict[str, Any]]:
    """The public rows (see `public_document`) of those of `listing_ids` that are publicly
    visible now; the others are left out."""
    result = await conn.execute(PUBLIC_MANY_SQL, {"listing_ids": list(listing_ids), "today": today})
    return [dict(row) for row in result.mappings()]


async def agreed_rows(
    conn: AsyncConnection, listing_ids: Sequence[uuid.UUID], today: dt.date
) -> list[dict[str, Any]]:
    """As `public_rows`, for listings whose sale was agreed earlier (an accepted bid or a
    cleared auction): active, from a verified cooperative, whatever their window says now."""
    result = await conn.execute(AGREED_MANY_SQL, {"listing_ids": list(listing_ids), "today": today})
    return [dict(row) for row in result.mappings()]


async def product_has_open_listing(session: AsyncSession, product_id: uuid.UUID) -> bool:
    """Whether a listing of the product is not closed (its stock counts in the product's
    unit of sale as it was when listed)."""
    found = await session.scalar(
        select(Listing.id)
        .where(Listing.product_id == product_id, Listing.status != "closed")
        .limit(1)
    )
    return found is not None


async def count_public(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(publicly_visible())) or 0)


async def sample_public_versions(session: AsyncSession, size: int) -> list[tuple[str, int]]:
    """(listing id, version) of a random sample of publicly visible listings."""
    rows = await session.execute(
        select(Listing.id, Listing.version)
        .where(publicly_visible())
        .order_by(func.random())
        .limit(size)
    )
    return [(str(listing_id), int(version)) for listing_id, version in rows]


async def list_public(
    session: AsyncSession,
    *,
    page: PageParams,
    category_code: str | None = None,
    county_code: str | None = None,
    sale_mode: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Active listings in their window, newest published first."""
    stmt = select(Listing).where(publicly_visible())
    if category_code is not None:
        categories = select(ProductCategory.code).where(
            or_(
                ProductCategory.code == category_code,
                ProductCategory.parent_code == category_code,
            )
        )
        stmt = stmt.join(Product, Product.id == Listing.product_id).where(
            Product.category_code.in_(categories)
        )
    if county_code is not None:
        stmt = stmt.join(Organisation, Organisation.id == Listing.cooperative_id).where(
            regions_service.within(Organisation.region_code, [county_code])
        )
    if sale_mode is not None:
        stmt = stmt.where(Listing.sale_mode == sale_mode)
    listings, cursor = await paginate(
        session, stmt, page, [Listing.published_at, Listing.id], descending=True
    )
    if not listings:
        return [], cursor
    today = china_today()
    connection = await session.connection()
    result = await connection.execute(
        PUBLIC_MANY_SQL, {"listing_ids": [x.id for x in listings], "today": today}
    )
    documents = {row["id"]: public_document(row, today) for row in result.mappings()}
    wanted = [str(x.id) for x in listings]
    return [documents[i] for i in wanted if i in documents], cursor
