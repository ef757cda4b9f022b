"""The demo data loads through the services and tells the story it promises."""

from __future__ import annotations

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
