"""The demo data loads through the services and tells the story it promises."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from market import demo
from market.listings.models import Listing
from market.sourcing import service as sourcing_service
from market.sourcing.models import Lot


async def test_demo_loads_the_baiyin_scenario(client, session, settings):
    logins = await demo.load(session, key=settings.hashing_key())
    assert len(logins) == len(demo.ORGANISATIONS)
    await session.flush()

    signed_in = await client.post(
        "/auth/token", data={"username": "gouqi@jingyuan.demo", "password": demo.DEMO_PASSWORD}
    )
    assert signed_in.status_code == 200

    lots = (await session.scalars(select(Lot))).all()
    shares = await sourcing_service.lot_shares(session, [lot.id for lot in lots])
    by_product = {}
    for lot in lots:
        trace = await client.get(f"/trace/{lot.trace_code}", headers={"Accept": "application/json"})
        by_product[trace.json()["product_name_zh"]] = shares[lot.id]
    wolfberry = by_product["靖远枸杞 特级干果"].poor_share_bp
    flour = by_product["景泰和尚头全麦面粉 5kg"].poor_share_bp
    assert wolfberry is not None and 5500 <= wolfberry <= 6500
    assert flour is not None and 800 <= flour <= 1200
    # households that exited poverty last year do not count for this year's purchases
    assert by_product["靖远枸杞 特级干果"].poor_households == 4

    modes = {row.sale_mode for row in (await session.scalars(select(Listing))).all()}
    assert modes == {"fixed", "negotiable", "auction"}
    public = await client.get("/listings")
    assert public.status_code == 200
    assert {item["sale_mode"] for item in public.json()["items"]} == modes

    # trading: orders in every state, negotiations with a counter-offer, a sealed auction
    # that closes a few minutes after the demo starts
    from market.orders.models import Order
    from market.trading.models import Bid, CounterOffer

    statuses = {o.status for o in (await session.scalars(select(Order))).all()}
    assert statuses == {"pending_payment", "paid", "completed", "cancelled", "expired", "disputed"}
    bids = (await session.scalars(select(Bid))).all()
    assert {b.status for b in bids if b.kind == "negotiation"} == {"open", "countered", "accepted"}
    assert (await session.scalars(select(CounterOffer))).first() is not None
    auction = next(
        x for x in (await session.scalars(select(Listing))).all() if x.sale_mode == "auction"
    )
    assert auction.auction_closes_at is not None
    closes_in = auction.auction_closes_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=1) < closes_in <= dt.timedelta(minutes=5)
    assert sum(1 for b in bids if b.kind == "auction") == 4

    # money: the paid orders were paid by one imported statement; what is delivered is
    # settled; a payout batch is scheduled; two lines wait for review; the books balance
    from market.money import ledger
    from market.money.models import Payment, PayoutBatch, Settlement, StatementLine

    paid_orders = {
        o.id for o in (await session.scalars(select(Order))).all() if o.status != "pending_payment"
    }
    payments = (await session.scalars(select(Payment))).all()
    assert {p.status for p in payments} == {"pending", "succeeded"}
    assert all(p.order_id in paid_orders for p in payments if p.status == "succeeded")
    review = (
        await session.scalars(select(StatementLine).where(StatementLine.review == "open"))
    ).all()
    assert sorted(line.outcome for line in review) == ["underpaid", "unmatched"]
    assert (await session.scalars(select(Settlement))).first() is not None
    [batch] = (await session.scalars(select(PayoutBatch))).all()
    assert batch.status == "scheduled" and batch.total_fen > 0
    assert sum(row[4] for row in await ledger.trial_balance(session)) == 0
