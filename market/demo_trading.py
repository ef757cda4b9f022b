"""Demo trading: orders in every state, negotiated bids with counter-offers, and sealed bids on
an auction that closes a few minutes after the demo starts (the worker clears it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from market import demo_money
from market.db import utcnow
from market.listings.models import Listing
from market.orders import service as orders_service
from market.organisations.models import Organisation
from market.trading import service as trading_service

AUCTION_CLOSES_IN = dt.timedelta(minutes=5)
TERMS = orders_service.Terms(fee_bps=300, payment_minutes=30, freshness_margin_days=2)
ORDER_STATES = (
    "pending_payment",
    "paid",
    "packed",
    "shipped",
    "completed",
    "cancelled",
    "expired",
    "disputed",
)
CITY_ADDRESSES = {
    "110106": ("北京市丰台区新发地农产品批发市场 5 号库", "赵磊", "13800010001"),
    "120101": ("天津市和平区何庄子批发市场采购部", "孙丽", "13800010002"),
    "510104": ("成都市锦江区农产品中心仓 2 号门", "杨帆", "13800010003"),
    "500103": ("重庆市渝中区菜园坝水果市场 8 号", "周强", "13800010004"),
    "610113": ("西安市雁塔区朱雀农产品交易中心", "吴敏", "13800010005"),
    "440106": ("广州市天河区江南果菜批发市场 A 区", "郑伟", "13800010006"),
}


def steps() -> int:
    return 3


def _address(buyer: Organisation) -> dict[str, Any]:
    address, name, phone = CITY_ADDRESSES.get(
        buyer.region_code, ("收货仓库 1 号门", "采购部", "13800010000")
    )
    return {
        "destination_code": buyer.region_code,
        "address": address,
        "contact_name": name,
        "contact_phone": phone,
    }


async def load(session: AsyncSession, *, advance: Callable[[str], None] = lambda _: None) -> None:
    buyers = list(
        await session.scalars(
            select(Organisation).where(Organisation.kind == "buyer").order_by(Organisation.name_zh)
        )
    )
    listings = list(
        await session.scalars(
            select(Listing).where(Listing.status == "active").order_by(Listing.title_zh)
        )
    )
    fixed = [x for x in listings if x.sale_mode == "fixed"]
    negotiable = [x for x in listings if x.sale_mode == "negotiable"]
    auctions = [x for x in listings if x.sale_mode == "auction"]

    placed = []
    for n, state in enumerate(ORDER_STATES):
        buyer = buyers[n % len(buyers)]
        listing = fixed[n % len(fixed)]
        order = await orders_service.place_order(
            session,
            buyer=buyer,
            user_id=None,
            data={
                "lines": [{"listing_id": listing.id, "quantity": listing.min_order_quantity}],
                **_address(buyer),
                "note": f"演示订单：{state}",
            },
            terms=TERMS,
        )
        placed.append((order, state, buyer))
    # buyers pay by bank transfer; the platform imports the day's statement
    paying = [
        o for o, state, _ in placed if state not in ("pending_payment", "expired", "cancelled")
    ]
    transfers = [await demo_money.open_transfer(session, o) for o in paying]
    waiting = [
        await demo_money.open_transfer(session, o) for o, s, _ in placed if s == "pending_payment"
    ]
    names = {b.id: b.name_zh for b in buyers}
    await demo_money.receive_transfers(session, transfers, waiting, names)
    for order, state, buyer in placed:
        await _bring_to(session, order, state, buyer)
    await demo_money.settle_and_schedule(session)
    advance("orders in every state, paid by bank transfer, settled and scheduled for payout")

    for n, listing in enumerate(negotiable):
        asks = [
            (buyers[(n + 1) % len(buyers)], 0.92, "open"),
            (buyers[(n + 2) % len(buyers)], 0.85, "countered"),
            (buyers[(n + 3) % len(buyers)], 0.97, "accepted"),
        ]
        for buyer, ratio, outcome in asks:
            bid = await trading_service.place_bid(
                session,
                buyer=buyer,
                user_id=None,
                data={
                    "listing_id": listing.id,
                    "unit_price_fen": int(listing.unit_price_fen * ratio),
                    "quantity": listing.min_order_quantity * 2,
                    "partial_ok": True,
                    "expires_at": utcnow() + dt.timedelta(days=3),
                    **_address(buyer),
                },
                snipe_minutes=0,
                snipe_max_extensions=0,
            )
            if outcome == "countered":
                await trading_service.counter_bid(
                    session,
                    bid_id=bid.id,
                    cooperative_id=listing.cooperative_id,
                    data={
                        "unit_price_fen": int(listing.unit_price_fen * 0.95),
                        "quantity": listing.min_order_quantity * 2,
                        "expires_at": utcnow() + dt.timedelta(days=2),
                        "message": "量大可再优惠，此价含包装",
                    },
                    user_id=None,
                )
            elif outcome == "accepted":
                await trading_service.accept_bid(
                    session,
                    bid_id=bid.id,
                    cooperative_id=listing.cooperative_id,
                    quantity=None,
                    terms=TERMS,
                    user_id=None,
                )
    advance("bids and counter-offers")

    for listing in auctions:
        listing.auction_closes_at = utcnow() + AUCTION_CLOSES_IN
        await session.flush()
        reserve = listing.reserve_price_fen or listing.unit_price_fen
        for n, buyer in enumerate(buyers[:4]):
            await trading_service.place_bid(
                session,
                buyer=buyer,
                user_id=None,
                data={
                    "listing_id": listing.id,
                    "unit_price_fen": reserve + 100 * (n - 1),  # one below the reserve
                    "quantity": listing.min_order_quantity * (n + 2),
                    "partial_ok": n % 2 == 0,
                    **_address(buyer),
                },
                snipe_minutes=0,
                snipe_max_extensions=0,
            )
    advance("sealed bids on the auction")


async def _bring_to(session: AsyncSession, order: Any, state: str, buyer: Organisation) -> None:
    if state == "pending_payment":
        return
    if state == "expired":
        order.payment_due_at = utcnow() - dt.timedelta(minutes=1)
        await session.flush()
        await orders_service.expire_unpaid(session)
        return
    if state == "cancelled":
        await orders_service.cancel_order(
            session, order_id=order.id, buyer_id=buyer.id, reason="采购计划调整"
        )
        return
    if state == "paid":  # paid by the imported statement
        return
    [fulfilment] = await orders_service.fulfilments_of(session, [order.id])
    await orders_service.pack(
        session, fulfilment_id=fulfilment.id, cooperative_id=fulfilment.cooperative_id
    )
    if state == "packed":
        return
    shipment = await orders_service.ship(
        session,
        fulfilment_id=fulfilment.id,
        cooperative_id=fulfilment.cooperative_id,
        data={"carrier": "顺丰速运", "tracking_number": f"SF{order.id.int % 10**12:012d}"},
        user_id=None,
        auto_confirm_days=10,
    )
    await orders_service.add_tracking_event(
        session,
        shipment_id=shipment.id,
        cooperative_id=fulfilment.cooperative_id,
        data={
            "happened_at": utcnow(),
            "location": "兰州转运中心",
            "description": "快件已发往目的地",
            "temperature_c10": None,
        },
    )
    if state == "shipped":
        return
    await orders_service.confirm_delivery(
        session, order_id=order.id, fulfilment_id=fulfilment.id, buyer_id=buyer.id
    )
    if state == "disputed":
        await orders_service.open_dispute(
            session,
            order_id=order.id,
            buyer_id=buyer.id,
            user_id=None,
            data={
                "fulfilment_id": fulfilment.id,
                "reason": "quality",
                "description": "部分包装受潮，约一成货物结块",
                "evidence": ["收货照片 IMG_0412.jpg"],
                "claimed_fen": fulfilment.goods_fen // 10,
            },
        )
