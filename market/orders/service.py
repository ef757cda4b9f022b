"""Orders: placing (stock reserved in the same transaction), paying, cancelling, expiring;
fulfilments per cooperative: packing, shipping (reserved stock becomes sold), delivery
confirmed by the buyer or by time."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from market.calendar import CHINA, china_today
from market.catalog import service as catalog_service
from market.config import Settings
from market.db import among, copy_rows, new_id, new_ids, short_ref, utcnow
from market.errors import Conflict, Invalid, MarketError, NotFound
from market.listings import service as listings_service
from market.logistics import service as logistics_service
from market.notifications import service as notifications_service
from market.orders import states
from market.orders.models import (
    Dispute,
    Fulfilment,
    Order,
    OrderLine,
    Shipment,
    ShipmentEvent,
)
from market.organisations import service as organisations_service
from market.organisations.models import Organisation
from market.pagination import PageParams, paginate
from market.regions import service as regions_service
from market.sourcing import service as sourcing_service

MAX_LINES = 50
# the most perishable storage class of a shipment decides how it travels
_STORAGE_RANK = {"ambient": 0, "chilled": 1, "frozen": 2}

log = logging.getLogger("market.orders")


@dataclass(frozen=True)
class Terms:
    """The business rules an order is placed under (from settings)."""

    fee_bps: int
    payment_minutes: int
    freshness_margin_days: int


def order_terms(settings: Settings) -> Terms:
    return Terms(
        fee_bps=settings.platform_fee_bps,
        payment_minutes=settings.order_payment_minutes,
        freshness_margin_days=settings.freshness_margin_days,
    )


def fee_fen(goods_fen: int, fee_bps: int) -> int:
    """The platform fee on the goods, rounded half-even to a whole fen: in integers, exactly
    (goods × bps / 10,000 is whole fen plus a remainder in ten-thousandths)."""
    fen, rest = divmod(goods_fen * fee_bps, 10_000)
    if rest * 2 > 10_000 or (rest * 2 == 10_000 and fen % 2):
        fen += 1
    return fen


def fee_shares(fee_fen: int, goods: Mapping[uuid.UUID, int]) -> dict[uuid.UUID, int]:
    """Split an order's platform fee over its parts in proportion to their goods, by largest
    remainder, so that the shares add up to the fee exactly."""
    total = sum(goods.values())
    if total <= 0:
        return dict.fromkeys(goods, 0)
    floors = {key: fee_fen * value // total for key, value in goods.items()}
    left = fee_fen - sum(floors.values())
    by_remainder = sorted(goods, key=lambda key: (-(fee_fen * goods[key] % total), str(key)))
    for key in by_remainder[:left]:
        floors[key] += 1
    return floors


def part_amounts(order: Order, fulfilments: list[Fulfilment]) -> dict[uuid.UUID, tuple[int, int]]:
    """Per fulfilment: (gross = goods + freight + fee share, fee share)."""
    shares = fee_shares(order.fee_fen, {f.id: f.goods_fen for f in fulfilments})
    return {f.id: (f.goods_fen + f.logistics_fen + shares[f.id], shares[f.id]) for f in fulfilments}


def tier_price(base_fen: int, tiers: list[tuple[int, int]], quantity: int) -> int:
    """The unit price for `quantity`: the tier with the largest minimum it reaches."""
    price = base_fen
    for min_quantity, unit_price_fen in sorted(tiers):
        if quantity >= min_quantity:
            price = unit_price_fen
    return price


async def get_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Order:
    """An order; NotFound when missing or (with buyer_id) another buyer's."""
    stmt = select(Order).where(Order.id == order_id)
    if buyer_id is not None:
        stmt = stmt.where(Order.buyer_id == buyer_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    order = await session.scalar(stmt)
    if order is None:
        raise NotFound("No such order.")
    return order


async def orders_by_id(session: AsyncSession, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, Order]:
    """Several orders in one query (for a page of fulfilments)."""
    rows = await session.scalars(select(Order).where(Order.id.in_(set(order_ids))))
    return {order.id: order for order in rows}


async def lines_of(session: AsyncSession, order_ids: list[uuid.UUID]) -> list[OrderLine]:
    rows = await session.scalars(
        select(OrderLine).where(OrderLine.order_id.in_(order_ids)).order_by(OrderLine.id)
    )
    return list(rows)


async def fulfilments_of(
    session: AsyncSession, order_ids: list[uuid.UUID], *, lock: bool = False
) -> list[Fulfilment]:
    stmt = (
        select(Fulfilment)
        .where(Fulfilment.order_id.in_(order_ids))
        .order_by(Fulfilment.created_at, Fulfilment.id)
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return list(await session.scalars(stmt))


async def shipments_of(session: AsyncSession, fulfilment_ids: list[uuid.UUID]) -> list[Shipment]:
    rows = await session.scalars(
        select(Shipment)
        .where(Shipment.fulfilment_id.in_(fulfilment_ids))
        .order_by(Shipment.created_at, Shipment.id)
    )
    return list(rows)


async def events_of(session: AsyncSession, shipment_ids: list[uuid.UUID]) -> list[ShipmentEvent]:
    rows = await session.scalars(
        select(ShipmentEvent)
        .where(ShipmentEvent.shipment_id.in_(shipment_ids))
        .order_by(ShipmentEvent.happened_at, ShipmentEvent.id)
    )
    return list(rows)


async def list_orders(
    session: AsyncSession, *, buyer_id: uuid.UUID, page: PageParams, status: str | None = None
) -> tuple[list[Order], str | None]:
    stmt = select(Order).where(Order.buyer_id == buyer_id)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    return await paginate(session, stmt, page, [Order.created_at, Order.id], descending=True)


async def _summary(session: AsyncSession, order: Order, cooperative_id: uuid.UUID | None) -> str:
    lines = await lines_of(session, [order.id])
    fulfilments = {f.id: f for f in await fulfilments_of(session, [order.id])}
    parts = [
        f"{line.title_zh} × {line.quantity}"
        for line in lines
        if cooperative_id is None
        or fulfilments[line.fulfilment_id].cooperative_id == cooperative_id
    ]
    return "；".join(parts)


async def _tell_cooperatives(session: AsyncSession, order: Order, kind: str, **extra: Any) -> None:
    buyer = await organisations_service.get_organisation(session, organisation_id=order.buyer_id)
    for fulfilment in await fulfilments_of(session, [order.id]):
        if fulfilment.decline_reason is not None:
            continue  # a cooperative that declined its part has nothing more to do with it
        await notifications_service.notify(
            session,
            organisation_id=fulfilment.cooperative_id,
            kind=kind,
            subject_type="fulfilment",
            subject_id=fulfilment.id,
            context={
                "buyer": buyer.name_zh,
                "summary": await _summary(session, order, fulfilment.cooperative_id),
                "order_ref": short_ref(order.id),
                "destination": order.destination_code,
                "due": order.payment_due_at.astimezone(CHINA).strftime("%m-%d %H:%M"),
                **extra,
            },
        )


# ---------------------------------------------------------------- placing


@dataclass
class _Line:
    index: int  # of the first request line for this listing (errors name it)
    listing_id: uuid.UUID
    quantity: int


def _merge(lines: list[dict[str, Any]]) -> list[_Line]:
    """Request lines summed per listing (two lines of one listing are one reservation and
    one price tier), in listing-id order: every order locks listings in the same order, so
    concurrent orders never deadlock."""
    if not lines:
        raise Invalid.field("lines", "An order needs at least one line.")
    if len(lines) > MAX_LINES:
        raise Invalid.field("lines", f"At most {MAX_LINES} lines per order.")
    merged: dict[uuid.UUID, _Line] = {}
    for index, line in enumerate(lines):
        found = merged.get(line["listing_id"])
        if found is None:
            merged[line["listing_id"]] = _Line(index, line["listing_id"], line["quantity"])
        else:
            found.quantity += line["quantity"]
    return sorted(merged.values(), key=lambda x: x.listing_id)


async def _not_on_sale(session: AsyncSession, listing_id: uuid.UUID, field: str) -> NoReturn:
    """Why a listing cannot be ordered: sold out is a conflict over stock (409, as when the
    reservation itself finds too little); anything else is not on sale (422)."""
    try:
        listing = await listings_service.get_listing(session, listing_id=listing_id)
    except NotFound:
        listing = None
    if listing is not None and listing.status == "sold_out":
        raise Conflict(
            f"{listing.title_zh} is sold out: 0 available.",
            code="insufficient_stock",
            errors=[{"field": f"{field}.quantity", "message": "0 available"}],
        )
    raise Invalid.field(
        f"{field}.listing_id", "This listing is not on sale now.", code="not_on_sale"
    )


async def place_order(
    session: AsyncSession,
    *,
    buyer: Organisation,
    user_id: uuid.UUID | None,
    data: dict[str, Any],
    terms: Terms,
    source: str = "direct",
    prices: dict[uuid.UUID, int] | None = None,
) -> Order:
    """Price the lines (quantity tiers), estimate freight per cooperative, reserve the stock
    and write the order, all in the caller's transaction: either everything or nothing.

    `prices` fixes the unit price per listing (an accepted bid or a cleared auction) instead
    of the listed price; only `fixed` listings are ordered directly."""
    if buyer.verification_status != "verified":
        raise Conflict(
            "Your organisation is not verified by the platform yet; orders open once it is.",
            code="buyer_not_verified",
        )
    destination = data["destination_code"]
    await regions_service.require_region(session, destination, field="destination_code")
    merged = _merge(data["lines"])
    today = china_today()
    connection = await session.connection()
    # a direct order buys what is on sale now; an agreed price (accepted bid, cleared
    # auction) buys from an active listing even when its window or bidding has closed since
    rows_of = listings_service.public_rows if prices is None else listings_service.agreed_rows
    public = {
        row["id"]: row for row in await rows_of(connection, [x.listing_id for x in merged], today)
    }
    order = Order(
        id=new_id(),
        buyer_id=buyer.id,
        placed_by_id=user_id,
        status="pending_payment",
        source=source,
        destination_code=destination,
        address=data["address"],
        contact_name=data["contact_name"],
        contact_phone=data["contact_phone"],
        note=data.get("note"),
        fee_bps=terms.fee_bps,
        payment_due_at=utcnow() + dt.timedelta(minutes=terms.payment_minutes),
    )
    # per cooperative: the goods, the weight, the most perishable storage class, the lines
    shipments: dict[uuid.UUID, dict[str, Any]] = defaultdict(
        lambda: {"goods": 0, "grams": 0, "storage": "ambient", "lines": []}
    )
    for line in merged:
        field = f"lines.{line.index}"
        row = public.get(str(line.listing_id))
        if row is None:
            await _not_on_sale(session, line.listing_id, field)
        if prices is None and row["sale_mode"] != "fixed":
            raise Invalid.field(
                f"{field}.listing_id",
                f"This listing is sold by {row['sale_mode']} (bid or auction), not at a fixed "
                "price.",
                code="not_fixed_price",
            )
        if row["cooperative_id"] == str(buyer.id):
            raise Invalid.field(f"{field}.listing_id", "You cannot buy your own listing.")
        if line.quantity > row["quantity_available"]:
            # the reservation below decides; this refuses at once what cannot fit, before the
            # totals of an impossible quantity (beyond a bigint) are computed and written
            raise Conflict(
                f"Only {row['quantity_available']} units of this listing are available, so "
                f"{line.quantity} cannot be reserved.",
                code="insufficient_stock",
                errors=[
                    {
                        "field": f"{field}.quantity",
                        "message": f"{row['quantity_available']} available",
                    }
                ],
            )
        if prices is None and line.quantity < row["min_order_quantity"]:
            raise Invalid.field(
                f"{field}.quantity",
                f"The minimum order for this listing is {row['min_order_quantity']} "
                f"(ordered: {line.quantity}).",
                code="below_minimum_order",
            )
        listing = await listings_service.get_listing(session, listing_id=line.listing_id)
        product = await catalog_service.get_product(session, product_id=listing.product_id)
        lot = await sourcing_service.get_lot(session, lot_id=listing.lot_id)
        tiers = list(zip(row["tier_quantities"] or [], row["tier_prices"] or [], strict=True))
        unit_price = (prices or {}).get(line.listing_id) or tier_price(
            row["unit_price_fen"], tiers, line.quantity
        )
        unit_size = catalog_service.unit_size(product)
        grams = (product.box_net_weight_g or 0) if product.unit == "piece" else unit_size
        shipment = shipments[uuid.UUID(row["cooperative_id"])]
        shipment["origin"] = row["county_code"]
        shipment["goods"] += unit_price * line.quantity
        shipment["grams"] += grams * line.quantity
        if _STORAGE_RANK[product.storage_class] > _STORAGE_RANK[shipment["storage"]]:
            shipment["storage"] = product.storage_class
        order_line = OrderLine(
            order_id=order.id,
            listing_id=line.listing_id,
            lot_id=listing.lot_id,
            title_zh=listing.title_zh,
            quantity=line.quantity,
            unit_size=unit_size,
            unit_price_fen=unit_price,
            line_total_fen=unit_price * line.quantity,
            poor_share_bp=sourcing_service.share_bp(
                int(row["poor_value_fen"] or 0), int(row["value_fen"] or 0)
            ),
        )
        shipment["lines"].append((order_line, field, product, lot))

    # one fulfilment per cooperative; its freight by the shipment's weight and storage class,
    # and every line must stay fresh for the journey
    fulfilments: list[Fulfilment] = []
    lines: list[OrderLine] = []
    for cooperative_id, shipment in shipments.items():
        _, _, straight = await regions_service.distance(session, shipment["origin"], destination)
        km = logistics_service.road_km(straight)
        rate = logistics_service.rate_for(shipment["storage"], shipment["grams"])
        days = logistics_service.transit_days(rate, km)
        fulfilment = Fulfilment(
            id=new_id(),
            order_id=order.id,
            cooperative_id=cooperative_id,
            status="pending",
            goods_fen=shipment["goods"],
            logistics_fen=logistics_service.freight_fen(rate, shipment["grams"], km),
            transit_days=days,
        )
        fulfilments.append(fulfilment)
        for order_line, field, product, lot in shipment["lines"]:
            fresh = logistics_service.freshness(
                shelf_life_days=product.shelf_life_days,
                made_on=lot.production_date or lot.harvest_date,
                today=today,
                transit=days,
                margin_days=terms.freshness_margin_days,
            )
            if not fresh.suitable:
                raise Invalid.field(
                    f"{field}.listing_id",
                    f"Not suitable for this destination: {fresh.reason}",
                    code="not_fresh_on_arrival",
                )
            order_line.fulfilment_id = fulfilment.id
            lines.append(order_line)

    order.goods_fen = sum(f.goods_fen for f in fulfilments)
    order.logistics_fen = sum(f.logistics_fen for f in fulfilments)
    order.fee_fen = fee_fen(order.goods_fen, terms.fee_bps)
    order.total_fen = order.goods_fen + order.logistics_fen + order.fee_fen
    session.add(order)
    await session.flush()
    session.add_all(fulfilments)
    await session.flush()
    session.add_all(lines)
    await session.flush()
    # the notification before the reservations: a hot listing's row lock is then held only
    # from its reservation to the commit (a refusal rolls the notification back with the rest)
    await _tell_cooperatives(session, order, "order_placed")
    # reservations last, in listing order; a refusal (409 insufficient_stock) rolls back all
    for line in merged:
        await listings_service.reserve(
            session,
            listing_id=line.listing_id,
            quantity=line.quantity,
            reason=f"order {order.id}",
            reference=str(order.id),
            user_id=user_id,
            check_window=prices is None,
        )
    return order


# ---------------------------------------------------------------- placing many at once


class AgreedSale(NamedTuple):
    """One buyer's purchase of one listing at a price agreed beforehand (a cleared auction's
    winning bid): what `place_order` gets as `buyer`, `user_id`, `data` and `prices` for a
    one-line order. Named tuples here: an auction makes thousands at once."""

    buyer_id: uuid.UUID
    user_id: uuid.UUID | None
    quantity: int
    unit_price_fen: int
    destination_code: str
    address: str
    contact_name: str
    contact_phone: str
    note: str | None = None


class PlacedOrder(NamedTuple):
    id: uuid.UUID
    payment_due_at: dt.datetime


class _Priced(NamedTuple):
    """A sale that passed every check, priced as place_order prices it."""

    sale: int  # its index in the sales
    order_id: uuid.UUID
    fulfilment_id: uuid.UUID
    unit_price_fen: int
    logistics_fen: int
    transit_days: int
    goods_fen: int


_ORDER_COLUMNS = (
    "id", "buyer_id", "placed_by_id", "status", "source", "destination_code", "address",
    "contact_name", "contact_phone", "note", "fee_bps", "payment_due_at", "goods_fen",
    "logistics_fen", "fee_fen", "total_fen",
)  # fmt: skip
_FULFILMENT_COLUMNS = (
    "id", "order_id", "cooperative_id", "status", "goods_fen", "logistics_fen", "transit_days",
)  # fmt: skip
_LINE_COLUMNS = (
    "id", "order_id", "fulfilment_id", "listing_id", "lot_id", "title_zh", "quantity",
    "unit_size", "unit_price_fen", "line_total_fen", "poor_share_bp",
)  # fmt: skip


async def place_agreed_orders(
    session: AsyncSession,
    *,
    listing_id: uuid.UUID,
    sales: Sequence[AgreedSale],
    terms: Terms,
    source: str = "auction",
) -> list[PlacedOrder | MarketError]:
    """`place_order` for many one-line orders of one listing at agreed prices, in a handful
    of statements: for each sale, in order, either the order it got or the error for which
    `place_order` would have refused it (a refused sale writes nothing; the others are placed
    as if one `place_order` after another had placed them).

    Each order gets exactly what `place_order(…, source=source, prices={listing: price})`
    gives it: the goods at the agreed price, freight and transit for its destination, the
    platform fee, the payment deadline, the line with the lot's poor share frozen and its own
    `reserve` movement. Unlike `place_order`, it does not send the cooperative an
    `order_placed` notification per order: the caller tells the cooperative once about all
    of them (an auction of thousands of winners is one event to the seller, not thousands of
    e-mails). The caller holds the listing's row lock (as a clearing does), so that nothing
    moves the stock in between."""
    if not sales:
        return []
    buyers = {
        organisation_id: status
        for organisation_id, status in await session.execute(
            select(Organisation.id, Organisation.verification_status).where(
                Organisation.id == among({s.buyer_id for s in sales})
            )
        )
    }
    results: list[PlacedOrder | MarketError | None] = [None] * len(sales)
    for k, sale in enumerate(sales):
        if sale.buyer_id not in buyers:
            results[k] = NotFound("No such organisation.")
        elif buyers[sale.buyer_id] != "verified":
            results[k] = Conflict(
                "Your organisation is not verified by the platform yet; orders open once it is.",
                code="buyer_not_verified",
            )
    unknown: dict[str, MarketError] = {}
    for destination in sorted({s.destination_code for s in sales}):
        try:
            await regions_service.require_region(session, destination, field="destination_code")
        except MarketError as exc:
            unknown[destination] = exc
    for k, sale in enumerate(sales):
        if results[k] is None and sale.destination_code in unknown:
            results[k] = unknown[sale.destination_code]
    if all(result is not None for result in results):
        return [result for result in results if result is not None]

    field = "lines.0"
    today = china_today()
    connection = await session.connection()
    rows = await listings_service.agreed_rows(connection, [listing_id], today)
    if not rows:
        try:
            await _not_on_sale(session, listing_id, field)
        except MarketError as exc:
            return [exc if result is None else result for result in results]
    row = rows[0]
    listing = await listings_service.get_listing(session, listing_id=listing_id)
    product = await catalog_service.get_product(session, product_id=listing.product_id)
    lot = await sourcing_service.get_lot(session, lot_id=listing.lot_id)
    cooperative_id = uuid.UUID(row["cooperative_id"])
    unit_size = catalog_service.unit_size(product)
    grams = (product.box_net_weight_g or 0) if product.unit == "piece" else unit_size
    storage = product.storage_class if _STORAGE_RANK[product.storage_class] > 0 else "ambient"
    made_on = lot.production_date or lot.harvest_date
    poor_share_bp = sourcing_service.share_bp(
        int(row["poor_value_fen"] or 0), int(row["value_fen"] or 0)
    )
    road: dict[str, int] = {}
    for destination in sorted({s.destination_code for s in sales} - set(unknown)):
        _, _, straight = await regions_service.distance(session, row["county_code"], destination)
        road[destination] = logistics_service.road_km(straight)

    # each sale as place_order would price it, in order; the stock as the reservations before
    # it would leave it. Freight, transit and freshness depend only on the quantity and the
    # destination: an auction's thousands of winners share a handful of them
    available, reserved = listing.quantity_available, listing.quantity_reserved
    placed: list[_Priced] = []
    shipping: dict[tuple[int, str], tuple[int, int, str | None]] = {}
    fresh_ids = iter(new_ids(2 * len(sales)))
    for k, sale in enumerate(sales):
        if results[k] is not None:
            continue
        if available == 0:  # sold out by the sales before it: no longer on sale
            results[k] = Conflict(
                f"{listing.title_zh} is sold out: 0 available.",
                code="insufficient_stock",
                errors=[{"field": f"{field}.quantity", "message": "0 available"}],
            )
            continue
        if sale.buyer_id == cooperative_id:
            results[k] = Invalid.field(f"{field}.listing_id", "You cannot buy your own listing.")
            continue
        unit_price = sale.unit_price_fen or tier_price(
            row["unit_price_fen"],
            list(zip(row["tier_quantities"] or [], row["tier_prices"] or [], strict=True)),
            sale.quantity,
        )
        quote = shipping.get((sale.quantity, sale.destination_code))
        if quote is None:
            weight = grams * sale.quantity
            km = road[sale.destination_code]
            rate = logistics_service.rate_for(storage, weight)
            days = logistics_service.transit_days(rate, km)
            fresh = logistics_service.freshness(
                shelf_life_days=product.shelf_life_days,
                made_on=made_on,
                today=today,
                transit=days,
                margin_days=terms.freshness_margin_days,
            )
            quote = (logistics_service.freight_fen(rate, weight, km), days, fresh.reason)
            shipping[sale.quantity, sale.destination_code] = quote
        freight, days, unsuitable = quote
        if unsuitable is not None:
            results[k] = Invalid.field(
                f"{field}.listing_id",
                f"Not suitable for this destination: {unsuitable}",
                code="not_fresh_on_arrival",
            )
            continue
        if sale.quantity > available:
            results[k] = Conflict(
                f"Only {available} units of this listing are available, so {sale.quantity} "
                f"cannot be reserved ({reserved} are reserved, {listing.quantity_sold} sold).",
                code="insufficient_stock",
            )
            continue
        available -= sale.quantity
        reserved += sale.quantity
        placed.append(
            _Priced(
                k,
                next(fresh_ids),
                next(fresh_ids),
                unit_price,
                freight,
                days,
                unit_price * sale.quantity,
            )
        )
    if not placed:
        return [result for result in results if result is not None]

    # the reservations first (all or none; their refusal is every sale's): the orders
    # they name are written below in the same transaction
    try:
        await listings_service.reserve_many(
            session,
            listing_id=listing_id,
            reservations=[
                listings_service.Reservation(
                    quantity=sales[p.sale].quantity,
                    reason=f"order {p.order_id}",
                    reference=str(p.order_id),
                    user_id=sales[p.sale].user_id,
                )
                for p in placed
            ],
            check_window=False,
        )
    except MarketError as exc:
        for p in placed:
            results[p.sale] = exc
        return [result for result in results if result is not None]

    # the orders, their fulfilments and lines, by COPY (thousands at once), in that order:
    # each one's keys point at rows written before it. PostgreSQL keeps the plans of its
    # foreign-key checks per connection: planned while these tables were small (a young
    # platform), they read the whole referenced table, and thousands of rows would then cost
    # time quadratic in their number. DISCARD PLANS has them planned again when the checks
    # run, at the end of each COPY, with the tables as they are then.
    await session.execute(text("DISCARD PLANS"))
    payment_due_at = utcnow() + dt.timedelta(minutes=terms.payment_minutes)
    orders = []
    for p in placed:
        sale = sales[p.sale]
        fee = fee_fen(p.goods_fen, terms.fee_bps)
        orders.append(
            (
                p.order_id, sale.buyer_id, sale.user_id, "pending_payment", source,
                sale.destination_code, sale.address, sale.contact_name, sale.contact_phone,
                sale.note, terms.fee_bps, payment_due_at, p.goods_fen, p.logistics_fen, fee,
                p.goods_fen + p.logistics_fen + fee,
            )
        )  # fmt: skip
    await copy_rows(session, "order", _ORDER_COLUMNS, orders)
    await copy_rows(
        session,
        "fulfilment",
        _FULFILMENT_COLUMNS,
        [
            (p.fulfilment_id, p.order_id, cooperative_id, "pending", p.goods_fen,
             p.logistics_fen, p.transit_days)
            for p in placed
        ],
    )  # fmt: skip
    await copy_rows(
        session,
        "order_line",
        _LINE_COLUMNS,
        [
            (line_id, p.order_id, p.fulfilment_id, listing_id, listing.lot_id, listing.title_zh,
             sales[p.sale].quantity, unit_size, p.unit_price_fen, p.goods_fen, poor_share_bp)
            for line_id, p in zip(new_ids(len(placed)), placed, strict=True)
        ],
    )  # fmt: skip
    for p in placed:
        results[p.sale] = PlacedOrder(p.order_id, payment_due_at)
    return [result for result in results if result is not None]


# ---------------------------------------------------------------- paying, cancelling, expiring


async def _release_all(
    session: AsyncSession, order: Order, reason: str, fulfilment_id: uuid.UUID | None = None
) -> None:
    """Give back the reserved stock of the order's lines (of one fulfilment, if given) that is
    still reserved: lines of an already cancelled part were released when it was declined."""
    fulfilments = {f.id: f for f in await fulfilments_of(session, [order.id])}
    lines = [
        line
        for line in await lines_of(session, [order.id])
        if (fulfilment_id is None and fulfilments[line.fulfilment_id].decline_reason is None)
        or line.fulfilment_id == fulfilment_id
    ]
    for line in sorted(lines, key=lambda x: x.listing_id):
        await listings_service.release(
            session,
            listing_id=line.listing_id,
            quantity=line.quantity,
            reason=reason,
            reference=str(order.id),
        )


async def mark_paid(session: AsyncSession, *, order_id: uuid.UUID, reference: str) -> Order:
    """The payment step (called by payments once the money is secured). The stock stays
    reserved until the cooperative ships. An order past its payment deadline is expired
    instead, and the payment refused (409 naming the status)."""
    order = await get_order(session, order_id=order_id, lock=True)
    if order.status == "pending_payment" and order.payment_due_at <= utcnow():
        await _expire(session, order)
    order.status = states.order_transition(order.status, "pay")
    order.paid_at = utcnow()
    order.payment_reference = reference
    order.updated_at = utcnow()
    await session.flush()
    await _tell_cooperatives(session, order, "order_paid")
    return order


async def payment_lapsed(
    session: AsyncSession, *, order_id: uuid.UUID, reference: str, reason: str, wait: dt.timedelta
) -> Order:
    """The payment that paid the order (`reference`, as `mark_paid` recorded it) fell
    through before any money was taken: a card authorisation voided by the bank or lapsed
    uncaptured. While nothing has shipped, the order waits for payment again for `wait`
    (its stock stays reserved, then expires as any unpaid order); the buyer is told. Once
    something has shipped, the goods are on their way without money: left to an operator,
    with an error in the log and the buyer told."""
    order = await get_order(session, order_id=order_id, lock=True)
    if order.status not in ("paid", "disputed") or order.payment_reference != reference:
        return order  # paid otherwise since, or no longer waiting on this payment
    shipped = any(
        f.status in ("shipped", "delivered") for f in await fulfilments_of(session, [order.id])
    )
    if order.status == "paid" and not shipped:
        order.status = states.order_transition(order.status, "lapse")
        order.paid_at = None
        order.payment_reference = None
        order.payment_due_at = utcnow() + wait
        order.updated_at = utcnow()
        await session.flush()
    else:
        log.error(
            "order %s: the payment %s that paid it fell through (%s) after goods shipped; "
            "an operator must settle it with the buyer",
            order.id,
            reference,
            reason,
        )
    await tell_payment_failed(session, order, reason)
    return order


async def tell_payment_failed(session: AsyncSession, order: Order, reason: str) -> None:
    """Tell the buyer a payment of the order did not go through, and until when it can pay."""
    await notifications_service.notify(
        session,
        organisation_id=order.buyer_id,
        kind="payment_failed",
        subject_type="order",
        subject_id=order.id,
        context={
            "order_ref": short_ref(order.id),
            "reason": reason,
            "due": order.payment_due_at.astimezone(CHINA).strftime("%m-%d %H:%M"),
        },
    )


async def _expire(session: AsyncSession, order: Order) -> None:
    order.status = states.order_transition(order.status, "expire")
    order.cancelled_at = utcnow()
    order.cancel_reason = "not paid in time"
    order.updated_at = utcnow()
    await _release_all(session, order, f"order {order.id} expired unpaid")
    await session.flush()
    await notifications_service.notify(
        session,
        organisation_id=order.buyer_id,
        kind="order_expired",
        subject_type="order",
        subject_id=order.id,
        context={
            "order_ref": short_ref(order.id),
            "due": order.payment_due_at.astimezone(CHINA).strftime("%m-%d %H:%M"),
        },
    )


async def expire_unpaid(session: AsyncSession, *, limit: int = 100) -> int:
    """Expire orders past their payment deadline and free their stock. Several workers may
    run this at once: each order is claimed by one (SKIP LOCKED)."""
    orders = list(
        await session.scalars(
            select(Order)
            .where(Order.status == "pending_payment", Order.payment_due_at <= utcnow())
            .order_by(Order.payment_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for order in orders:
        await _expire(session, order)
    return len(orders)


async def cancel_order(
    session: AsyncSession, *, order_id: uuid.UUID, buyer_id: uuid.UUID, reason: str
) -> Order:
    """The buyer cancels before anything has shipped: the reserved stock goes back. (A paid
    order's refund is the payments step's.)"""
    order = await get_order(session, order_id=order_id, buyer_id=buyer_id, lock=True)
    fulfilments = await fulfilments_of(session, [order.id], lock=True)
    shipped = [f for f in fulfilments if f.status not in ("pending", "packed", "cancelled")]
    if shipped:
        raise Conflict(
            "Part of this order has shipped; it can no longer be cancelled. Open a dispute "
            "instead if something is wrong.",
            code="already_shipped",
            current_status=order.status,
        )
    order.status = states.order_transition(order.status, "cancel")
    order.cancelled_at = utcnow()
    order.cancel_reason = reason
    order.updated_at = utcnow()
    for fulfilment in fulfilments:
        if fulfilment.status != "cancelled":
            fulfilment.status = states.fulfilment_transition(fulfilment.status, "cancel")
            fulfilment.cancelled_at = utcnow()
    await _release_all(session, order, f"order {order.id} cancelled: {reason}")
    await session.flush()
    await _tell_cooperatives(session, order, "order_cancelled", reason=reason)
    return order


# ---------------------------------------------------------------- fulfilment


async def decline(
    session: AsyncSession,
    *,
    fulfilment_id: uuid.UUID,
    cooperative_id: uuid.UUID,
    reason: str,
) -> Fulfilment:
    """The cooperative cannot supply its part (before shipping): its stock is released and the
    buyer is told; the buyer is not charged for it (a card authorisation is captured without
    it; money already taken is refunded by payments). When no part is left, the order is
    cancelled."""
    found = await get_fulfilment(
        session, fulfilment_id=fulfilment_id, cooperative_id=cooperative_id
    )
    order = await get_order(session, order_id=found.order_id, lock=True)
    if order.status not in ("pending_payment", "paid", "disputed"):
        raise Conflict(
            f"The order is {order.status.replace('_', ' ')}; only unpaid or paid orders can be "
            "declined.",
            code="invalid_transition",
            current_status=order.status,
        )
    fulfilment = await get_fulfilment(session, fulfilment_id=found.id, lock=True)
    await session.refresh(fulfilment)
    await _not_in_dispute(session, order, fulfilment)
    fulfilment.status = states.fulfilment_transition(fulfilment.status, "cancel")
    fulfilment.cancelled_at = utcnow()
    fulfilment.decline_reason = reason
    await _release_all(
        session, order, f"order {order.id}: part declined: {reason}", fulfilment_id=fulfilment.id
    )
    order.updated_at = utcnow()
    await session.flush()
    others = await fulfilments_of(session, [order.id])
    if all(f.status == "cancelled" for f in others):
        order.status = states.order_transition(order.status, "cancel")
        order.cancelled_at = utcnow()
        order.cancel_reason = f"every cooperative declined: {reason}"
    else:
        await _complete_if_done(session, order)
    await session.flush()
    cooperative = await organisations_service.get_organisation(
        session, organisation_id=fulfilment.cooperative_id
    )
    await notifications_service.notify(
        session,
        organisation_id=order.buyer_id,
        kind="part_declined",
        subject_type="order",
        subject_id=order.id,
        context={
            "cooperative": cooperative.name_zh,
            "order_ref": short_ref(order.id),
            "reason": reason,
            # what the buyer is not charged: goods, freight and the part's share of the fee
            "amount": notifications_service.yuan(part_amounts(order, others)[fulfilment.id][0]),
        },
    )
    return fulfilment


async def get_fulfilment(
    session: AsyncSession,
    *,
    fulfilment_id: uuid.UUID,
    cooperative_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Fulfilment:
    stmt = select(Fulfilment).where(Fulfilment.id == fulfilment_id)
    if cooperative_id is not None:
        stmt = stmt.where(Fulfilment.cooperative_id == cooperative_id)
    if order_id is not None:
        stmt = stmt.where(Fulfilment.order_id == order_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    fulfilment = await session.scalar(stmt)
    if fulfilment is None:
        raise NotFound("No such fulfilment.")
    return fulfilment


async def list_fulfilments(
    session: AsyncSession, *, cooperative_id: uuid.UUID, page: PageParams, status: str | None
) -> tuple[list[Fulfilment], str | None]:
    """The cooperative's incoming work: fulfilments of paid orders (and later ones)."""
    stmt = (
        select(Fulfilment)
        .join(Order, Order.id == Fulfilment.order_id)
        .where(Fulfilment.cooperative_id == cooperative_id, Order.paid_at.is_not(None))
    )
    if status is not None:
        stmt = stmt.where(Fulfilment.status == status)
    return await paginate(
        session, stmt, page, [Fulfilment.created_at, Fulfilment.id], descending=True
    )


async def _locked_for_fulfilment(
    session: AsyncSession, *, fulfilment_id: uuid.UUID, cooperative_id: uuid.UUID
) -> tuple[Order, Fulfilment]:
    """The paid order and the fulfilment, locked in the order every writer takes them (order,
    then fulfilment), so that shipping and cancelling never both pass their checks."""
    found = await get_fulfilment(
        session, fulfilment_id=fulfilment_id, cooperative_id=cooperative_id
    )
    order = await get_order(session, order_id=found.order_id, lock=True)
    fulfilment = await get_fulfilment(session, fulfilment_id=found.id, lock=True)
    await session.refresh(fulfilment)
    if order.status not in ("paid", "disputed"):
        raise Conflict(
            f"The order is {order.status.replace('_', ' ')}; only paid orders are fulfilled.",
            code="order_not_paid",
            current_status=order.status,
        )
    await _not_in_dispute(session, order, fulfilment)
    return order, fulfilment


async def _not_in_dispute(session: AsyncSession, order: Order, fulfilment: Fulfilment) -> None:
    """409 dispute_open when this part waits for the platform's decision on a dispute. A
    dispute is about one cooperative's part: the other parts of a disputed order go on."""
    if order.status != "disputed":
        return
    undecided = await session.scalar(
        select(Dispute.id).where(
            Dispute.fulfilment_id == fulfilment.id, Dispute.status != "decided"
        )
    )
    if undecided is not None:
        raise Conflict(
            "This part of the order is under dispute: it waits for the platform's decision.",
            code="dispute_open",
            current_status=order.status,
        )


async def pack(
    session: AsyncSession, *, fulfilment_id: uuid.UUID, cooperative_id: uuid.UUID
) -> Fulfilment:
    _, fulfilment = await _locked_for_fulfilment(
        session, fulfilment_id=fulfilment_id, cooperative_id=cooperative_id
    )
    fulfilment.status = states.fulfilment_transition(fulfilment.status, "pack")
    fulfilment.packed_at = utcnow()
    await session.flush()
    return fulfilment


async def ship(
    session: AsyncSession,
    *,
    fulfilment_id: uuid.UUID,
    cooperative_id: uuid.UUID,
    data: dict[str, Any],
    user_id: uuid.UUID | None,
    auto_confirm_days: int,
) -> Shipment:
    """Hand the goods to a carrier: the fulfilment's reserved stock is sold, and the clock for
    automatic delivery confirmation starts."""
    _, fulfilment = await _locked_for_fulfilment(
        session, fulfilment_id=fulfilment_id, cooperative_id=cooperative_id
    )
    fulfilment.status = states.fulfilment_transition(fulfilment.status, "ship")
    fulfilment.shipped_at = utcnow()
    fulfilment.confirm_by = fulfilment.shipped_at + dt.timedelta(days=auto_confirm_days)
    lines = await session.scalars(
        select(OrderLine)
        .where(OrderLine.fulfilment_id == fulfilment.id)
        .order_by(OrderLine.listing_id)
    )
    for line in lines:  # what leaves is sold: reserved → sold
        await listings_service.sell(
            session,
            listing_id=line.listing_id,
            quantity=line.quantity,
            reason=f"order {fulfilment.order_id} shipped",
            reference=str(fulfilment.order_id),
            user_id=user_id,
        )
    shipment = Shipment(fulfilment_id=fulfilment.id, shipped_by_id=user_id, **data)
    session.add(shipment)
    await session.flush()
    order = await get_order(session, order_id=fulfilment.order_id)
    cooperative = await organisations_service.get_organisation(
        session, organisation_id=fulfilment.cooperative_id
    )
    await notifications_service.notify(
        session,
        organisation_id=order.buyer_id,
        kind="order_shipped",
        subject_type="order",
        subject_id=order.id,
        context={
            "cooperative": cooperative.name_zh,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "cold_chain": shipment.cold_chain,
            "transit_days": fulfilment.transit_days,
        },
    )
    return shipment


async def add_tracking_event(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    cooperative_id: uuid.UUID,
    data: dict[str, Any],
) -> ShipmentEvent:
    shipment = await session.scalar(
        select(Shipment)
        .join(Fulfilment, Fulfilment.id == Shipment.fulfilment_id)
        .where(Shipment.id == shipment_id, Fulfilment.cooperative_id == cooperative_id)
    )
    if shipment is None:
        raise NotFound("No such shipment.")
    event = ShipmentEvent(shipment_id=shipment.id, **data)
    session.add(event)
    await session.flush()
    return event


async def _deliver(session: AsyncSession, order: Order, fulfilment: Fulfilment, by: str) -> None:
    """Both locked by the caller, the order first."""
    fulfilment.status = states.fulfilment_transition(fulfilment.status, "deliver")
    fulfilment.delivered_at = utcnow()
    fulfilment.delivery_confirmed_by = by
    await session.flush()
    await notifications_service.notify(
        session,
        organisation_id=fulfilment.cooperative_id,
        kind="order_delivered",
        subject_type="fulfilment",
        subject_id=fulfilment.id,
        context={
            "order_ref": short_ref(fulfilment.order_id),
            "by": "买家确认" if by == "buyer" else "到期自动确认",
        },
    )
    await _complete_if_done(session, order)


async def _complete_if_done(session: AsyncSession, order: Order) -> None:
    """A paid order whose every part is delivered (or cancelled) is completed."""
    others = await fulfilments_of(session, [order.id])
    if order.status == "paid" and all(f.status in ("delivered", "cancelled") for f in others):
        order.status = states.order_transition(order.status, "complete")
        order.updated_at = utcnow()
        await session.flush()


async def confirm_delivery(
    session: AsyncSession, *, order_id: uuid.UUID, fulfilment_id: uuid.UUID, buyer_id: uuid.UUID
) -> Fulfilment:
    order = await get_order(session, order_id=order_id, buyer_id=buyer_id, lock=True)
    fulfilment = await get_fulfilment(
        session, fulfilment_id=fulfilment_id, order_id=order_id, lock=True
    )
    await session.refresh(fulfilment)
    await _deliver(session, order, fulfilment, "buyer")
    return fulfilment


async def auto_confirm(session: AsyncSession, *, limit: int = 100) -> int:
    """Confirm delivery of fulfilments shipped long enough ago that the buyer said nothing."""
    due = list(
        await session.execute(
            select(Fulfilment.id, Fulfilment.order_id)
            .where(Fulfilment.status == "shipped", Fulfilment.confirm_by <= utcnow())
            .order_by(Fulfilment.confirm_by)
            .limit(limit)
        )
    )
    confirmed = 0
    for fulfilment_id, order_id in due:
        # order first, then fulfilment, as every writer locks them; another worker's may be done
        order = await get_order(session, order_id=order_id, lock=True)
        fulfilment = await get_fulfilment(session, fulfilment_id=fulfilment_id, lock=True)
        await session.refresh(fulfilment)
        if fulfilment.status == "shipped":
            await _deliver(session, order, fulfilment, "auto")
            confirmed += 1
    return confirmed


# ---------------------------------------------------------------- disputes


async def refundable_fen(session: AsyncSession, fulfilment: Fulfilment) -> int:
    """Goods and freight of a fulfilment, less the refunds decided in its earlier disputes."""
    refunded = await session.scalar(
        select(func.coalesce(func.sum(Dispute.refund_fen), 0)).where(
            Dispute.fulfilment_id == fulfilment.id, Dispute.status == "decided"
        )
    )
    return fulfilment.goods_fen + fulfilment.logistics_fen - int(refunded or 0)


async def open_dispute(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    user_id: uuid.UUID | None,
    data: dict[str, Any],
) -> Dispute:
    """The buyer complains about one cooperative's part of a paid or completed order; the
    order is disputed until the platform decides."""
    order = await get_order(session, order_id=order_id, buyer_id=buyer_id, lock=True)
    fulfilment = await get_fulfilment(
        session, fulfilment_id=data["fulfilment_id"], order_id=order.id
    )
    if fulfilment.status == "cancelled":
        raise Conflict(
            "This part of the order was cancelled.",
            code="invalid_transition",
            current_status="cancelled",
        )
    pending = await session.scalar(
        select(Dispute.id).where(
            Dispute.fulfilment_id == fulfilment.id, Dispute.status != "decided"
        )
    )
    if pending is not None:
        raise Conflict(
            "A dispute about this part of the order is already open.", code="dispute_open"
        )
    limit = await refundable_fen(session, fulfilment)
    if limit <= 0:
        raise Conflict(
            "This part of the order has already been refunded in full.", code="fully_refunded"
        )
    if data.get("claimed_fen") is not None and data["claimed_fen"] > limit:
        raise Invalid.field(
            "claimed_fen",
            f"At most {limit} fen (goods and freight of this part, less refunds already "
            "decided) can be claimed.",
        )
    if order.status != "disputed":
        order.status = states.order_transition(order.status, "dispute")
        order.updated_at = utcnow()
    dispute = Dispute(order_id=order.id, opened_by_id=user_id, status="open", **data)
    session.add(dispute)
    await session.flush()
    await notifications_service.notify(
        session,
        organisation_id=fulfilment.cooperative_id,
        kind="dispute_opened",
        subject_type="dispute",
        subject_id=dispute.id,
        context={"order_ref": short_ref(order.id), "reason": dispute.description},
    )
    return dispute


async def get_dispute(
    session: AsyncSession,
    *,
    dispute_id: uuid.UUID,
    buyer_id: uuid.UUID | None = None,
    cooperative_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Dispute:
    stmt = select(Dispute).where(Dispute.id == dispute_id)
    if buyer_id is not None:
        stmt = stmt.join(Order, Order.id == Dispute.order_id).where(Order.buyer_id == buyer_id)
    if cooperative_id is not None:
        stmt = stmt.join(Fulfilment, Fulfilment.id == Dispute.fulfilment_id).where(
            Fulfilment.cooperative_id == cooperative_id
        )
    if lock:
        stmt = stmt.with_for_update(of=Dispute).execution_options(populate_existing=True)
    dispute = await session.scalar(stmt)
    if dispute is None:
        raise NotFound("No such dispute.")
    return dispute


async def list_disputes(
    session: AsyncSession,
    *,
    page: PageParams,
    order_id: uuid.UUID | None = None,
    cooperative_id: uuid.UUID | None = None,
    undecided: bool = False,
) -> tuple[list[Dispute], str | None]:
    stmt = select(Dispute)
    if order_id is not None:
        stmt = stmt.where(Dispute.order_id == order_id)
    if cooperative_id is not None:
        stmt = stmt.join(Fulfilment, Fulfilment.id == Dispute.fulfilment_id).where(
            Fulfilment.cooperative_id == cooperative_id
        )
    if undecided:
        stmt = stmt.where(Dispute.status != "decided")
    return await paginate(session, stmt, page, [Dispute.created_at, Dispute.id], descending=True)


async def answer_dispute(
    session: AsyncSession,
    *,
    dispute_id: uuid.UUID,
    cooperative_id: uuid.UUID,
    user_id: uuid.UUID | None,
    answer: str,
) -> Dispute:
    dispute = await get_dispute(
        session, dispute_id=dispute_id, cooperative_id=cooperative_id, lock=True
    )
    dispute.status = states.dispute_transition(dispute.status, "answer")
    dispute.answer = answer
    dispute.answered_by_id = user_id
    dispute.answered_at = utcnow()
    await session.flush()
    order = await get_order(session, order_id=dispute.order_id)
    await notifications_service.notify(
        session,
        organisation_id=order.buyer_id,
        kind="dispute_answered",
        subject_type="dispute",
        subject_id=dispute.id,
        context={"order_ref": short_ref(order.id), "answer": answer},
    )
    return dispute


DECISION_WORDS = {"reject": "驳回", "partial_refund": "部分退款", "full_refund": "全额退款"}


async def decide_dispute(
    session: AsyncSession,
    *,
    dispute_id: uuid.UUID,
    operator_id: uuid.UUID | None,
    decision: str,
    refund_fen: int | None,
    note: str,
) -> Dispute:
    """The platform decides: reject, or refund part or all of what is left refundable of the
    cooperative's part (goods and freight, less earlier refunds). When no other dispute of the
    order is open, the order goes back to paid, and completes if every part is delivered."""
    found = await get_dispute(session, dispute_id=dispute_id)
    order = await get_order(session, order_id=found.order_id, lock=True)
    dispute = await get_dispute(session, dispute_id=dispute_id, lock=True)
    fulfilment = await get_fulfilment(session, fulfilment_id=dispute.fulfilment_id)
    limit = await refundable_fen(session, fulfilment)
    if decision == "reject":
        refund = 0
    elif decision == "full_refund":
        refund = limit
    else:
        if refund_fen is None or not 0 < refund_fen < limit:
            raise Invalid.field(
                "refund_fen", f"A partial refund is more than 0 and less than {limit} fen."
            )
        refund = refund_fen
    dispute.status = states.dispute_transition(dispute.status, "decide")
    dispute.decision = decision
    dispute.refund_fen = refund
    dispute.decision_note = note
    dispute.decided_by_id = operator_id
    dispute.decided_at = utcnow()
    await session.flush()
    still_open = await session.scalar(
        select(func.count()).where(Dispute.order_id == order.id, Dispute.status != "decided")
    )
    if not still_open and order.status == "disputed":
        # back to paid, so that parts not yet delivered can still ship; completed at once
        # when every part is delivered or cancelled
        order.status = states.order_transition(order.status, "resolve")
        order.updated_at = utcnow()
        await session.flush()
        await _complete_if_done(session, order)
    words = DECISION_WORDS[decision] + (f" {notifications_service.yuan(refund)}" if refund else "")
    for organisation_id in (order.buyer_id, fulfilment.cooperative_id):
        await notifications_service.notify(
            session,
            organisation_id=organisation_id,
            kind="dispute_decided",
            subject_type="dispute",
            subject_id=dispute.id,
            context={"order_ref": short_ref(order.id), "decision": f"{words}：{note}"},
        )
    return dispute
