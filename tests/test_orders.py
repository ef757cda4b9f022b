"""Direct orders through the API: pricing, reservations, payment deadline, fulfilment,
shipments, delivery; access rules; 50 buyers racing for the last 10 kg."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from market.db import create_sessionmaker
from market.errors import Conflict
from market.listings.models import Listing, StockMovement
from market.orders import service as orders_service
from market.orders import states
from market.orders.models import Fulfilment, Order
from tests.factories import bearer, member_with_token
from tests.factories_listings import Supply, make_listing, make_supply, open_lot
from tests.test_listings import key, problem

ADDRESS = {
    "destination_code": "110105",
    "address": "北京市朝阳区新发地农产品批发市场 B 区 12 号",
    "contact_name": "王建国",
    "contact_phone": "13800138000",
}


async def buyer(session: AsyncSession) -> tuple[Any, str]:
    _, organisation, token = await member_with_token(session, kind="buyer", region_code="110105")
    return organisation, token


def orders_url(organisation: Any, *rest: object) -> str:
    return "/".join([f"/organisations/{organisation.id}/orders", *map(str, rest)])


def fulfilments_url(supply: Supply, *rest: object) -> str:
    return "/".join([f"/organisations/{supply.cooperative.id}/fulfilments", *map(str, rest)])


async def place(
    client: httpx.AsyncClient,
    organisation: Any,
    token: str,
    lines: list[dict[str, Any]],
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        orders_url(organisation),
        headers=bearer(token) | key(),
        json={"lines": lines, **ADDRESS, **extra},
    )


async def listing_state(session: AsyncSession, listing_id: uuid.UUID) -> tuple[int, int, int]:
    row = (
        await session.execute(
            select(Listing.quantity_available, Listing.quantity_reserved, Listing.quantity_sold)
            .where(Listing.id == listing_id)
            .execution_options(populate_existing=True)
        )
    ).one()
    return row[0], row[1], row[2]


# ---------------------------------------------------------------- placing


async def test_an_order_prices_tiers_freight_and_fee_and_reserves_the_stock(client, session):
    supply = await make_supply(session)  # 500 g boxes; 6800, from 20: 6500, from 40: 6200
    listing = await make_listing(session, supply)  # 50 boxes
    organisation, token = await buyer(session)
    # two lines of one listing count as one: 15 + 10 = 25 boxes reach the 20-box tier
    response = await place(
        client,
        organisation,
        token,
        [
            {"listing_id": str(listing.id), "quantity": 15},
            {"listing_id": str(listing.id), "quantity": 10},
        ],
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending_payment"
    assert order["goods_fen"] == 25 * 6500
    assert order["fee_bps"] == 300 and order["fee_fen"] == 4875  # 3 % of 162,500
    assert order["logistics_fen"] > 0
    assert order["total_fen"] == order["goods_fen"] + order["logistics_fen"] + order["fee_fen"]
    [fulfilment] = order["fulfilments"]
    assert fulfilment["cooperative_id"] == str(supply.cooperative.id)
    assert fulfilment["goods_fen"] == order["goods_fen"]
    assert fulfilment["logistics_fen"] == order["logistics_fen"]
    [line] = fulfilment["lines"]
    assert (line["quantity"], line["unit_price_fen"], line["line_total_fen"]) == (25, 6500, 162_500)
    assert line["poor_share_bp"] == 6000  # frozen from the lot
    due = dt.datetime.fromisoformat(order["payment_due_at"])
    assert dt.timedelta(minutes=29) < due - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=30)
    assert await listing_state(session, listing.id) == (25, 25, 0)
    reserve = await session.scalar(
        select(StockMovement).where(
            StockMovement.listing_id == listing.id, StockMovement.kind == "reserve"
        )
    )
    assert reserve is not None and reserve.reference == order["id"]

    read = await client.get(orders_url(organisation, order["id"]), headers=bearer(token))
    assert read.status_code == 200 and read.json() == order
    page = await client.get(orders_url(organisation), headers=bearer(token))
    assert [o["id"] for o in page.json()["items"]] == [order["id"]]


async def test_a_line_belongs_to_its_fulfilments_order_and_its_listings_lot(client, session):
    """The order line's two keys: its (fulfilment, order) must be a fulfilment of that order,
    its (listing, lot) must be that listing with its own lot. A line moved to another order,
    or to a lot that is not its listing's, is refused by the database itself."""
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    orders = []
    for quantity in (5, 6):
        placed = await place(
            client, organisation, token, [{"listing_id": str(listing.id), "quantity": quantity}]
        )
        assert placed.status_code == 201, placed.text
        orders.append(placed.json())
    line_id = orders[0]["fulfilments"][0]["lines"][0]["id"]
    other_lot = await open_lot(session, supply.cooperative, supply.product)
    for column, value, key_name in (
        ("order_id", orders[1]["id"], "fk_order_line_fulfilment_id_fulfilment"),
        ("lot_id", str(other_lot.id), "fk_order_line_listing_id_listing"),
    ):
        with pytest.raises(IntegrityError, match=key_name):
            async with session.begin_nested():
                await session.execute(
                    text(f"UPDATE order_line SET {column} = :v WHERE id = :id"),
                    {"v": value, "id": line_id},
                )


async def test_bad_orders_name_the_field_and_write_nothing(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    auction_like = await make_listing(session, supply, sale_mode="negotiable", price_tiers=[])
    organisation, token = await buyer(session)
    one = str(listing.id)
    cases = [
        ([{"listing_id": one, "quantity": 0}], {}, "lines.0.quantity"),
        ([{"listing_id": one, "quantity": -3}], {}, "lines.0.quantity"),
        ([{"listing_id": one, "quantity": 1.5}], {}, "lines.0.quantity"),
        ([{"listing_id": one, "quantity": 10**13}], {}, "lines.0.quantity"),
        ([{"listing_id": one, "quantity": 2}], {}, "lines.0.quantity"),  # minimum order 5
        ([{"listing_id": one, "quantity": 5, "price": 1}], {}, "lines.0.price"),
        ([], {}, "lines"),
        ([{"listing_id": str(uuid.uuid4()), "quantity": 5}], {}, "lines.0.listing_id"),
        ([{"listing_id": str(auction_like.id), "quantity": 5}], {}, "lines.0.listing_id"),
        ([{"listing_id": one, "quantity": 5}], {"destination_code": "999999"}, "destination_code"),
        ([{"listing_id": one, "quantity": 5}], {"contact_phone": "call me"}, "contact_phone"),
        ([{"listing_id": one, "quantity": 5}], {"colour": "red"}, "colour"),
    ]
    for lines, extra, field in cases:
        response = await place(client, organisation, token, lines, **extra)
        assert response.status_code == 422, (field, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], (field, response.json())
    too_many = await place(client, organisation, token, [{"listing_id": one, "quantity": 51}])
    problem(too_many, 409, "insufficient_stock")
    # fifty lines of a trillion boxes at ¥2,000: goods past a bigint, refused as stock before
    # anything is priced or written, not a 500
    dear = await make_listing(session, supply, unit_price_fen=200_000, price_tiers=[])
    absurd = await place(
        client, organisation, token, [{"listing_id": str(dear.id), "quantity": 10**12}] * 50
    )
    assert problem(absurd, 409, "insufficient_stock")["errors"] == [
        {"field": "lines.0.quantity", "message": "50 available"}
    ]
    assert await session.scalar(select(func.count()).select_from(Order)) == 0
    assert await listing_state(session, listing.id) == (50, 0, 0)
    no_key = await client.post(
        orders_url(organisation),
        headers=bearer(token),
        json={"lines": [{"listing_id": one, "quantity": 5}], **ADDRESS},
    )
    problem(no_key, 422, "idempotency_key_required")


async def test_orders_are_scoped_to_the_buyer(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    other, other_token = await buyer(session)
    order = (
        await place(client, organisation, token, [{"listing_id": str(listing.id), "quantity": 5}])
    ).json()
    # another buyer: 404 through its own organisation, 404 through ours
    assert (
        await client.get(orders_url(other, order["id"]), headers=bearer(other_token))
    ).status_code == 404
    assert (
        await client.get(orders_url(organisation, order["id"]), headers=bearer(other_token))
    ).status_code == 404
    cancel = await client.post(
        orders_url(other, order["id"], "cancel"),
        headers=bearer(other_token) | key(),
        json={"reason": "x"},
    )
    assert cancel.status_code == 404
    # a cooperative cannot place orders, a buyer cannot fulfil
    problem(
        await place(
            client,
            supply.cooperative,
            supply.token,
            [{"listing_id": str(listing.id), "quantity": 5}],
        ),
        403,
        "not_a_buyer",
    )
    problem(
        await client.get(f"/organisations/{organisation.id}/fulfilments", headers=bearer(token)),
        403,
        "not_a_cooperative",
    )


# ---------------------------------------------------------------- the payment deadline


async def test_unpaid_orders_expire_free_the_stock_and_cannot_be_paid(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order_id = (
        await place(client, organisation, token, [{"listing_id": str(listing.id), "quantity": 20}])
    ).json()["id"]
    assert await listing_state(session, listing.id) == (30, 20, 0)
    await session.execute(
        update(Order)
        .where(Order.id == uuid.UUID(order_id))
        .values(payment_due_at=func.now() - dt.timedelta(seconds=1))
    )
    assert await orders_service.expire_unpaid(session) == 1
    assert await listing_state(session, listing.id) == (50, 0, 0)
    read = (await client.get(orders_url(organisation, order_id), headers=bearer(token))).json()
    assert read["status"] == "expired" and read["cancel_reason"] == "not paid in time"
    try:
        await orders_service.mark_paid(session, order_id=uuid.UUID(order_id), reference="BANK-1")
    except Conflict as refused:
        assert refused.extensions["current_status"] == "expired"
        assert "expired" in refused.detail
    else:
        raise AssertionError("an expired order was paid")


async def test_a_payment_after_the_deadline_expires_the_order_first(session, client):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order_id = uuid.UUID(
        (
            await place(
                client, organisation, token, [{"listing_id": str(listing.id), "quantity": 5}]
            )
        ).json()["id"]
    )
    await session.execute(
        update(Order).where(Order.id == order_id).values(payment_due_at=func.now())
    )
    try:
        await orders_service.mark_paid(session, order_id=order_id, reference="late")
    except Conflict as refused:
        assert refused.code == "invalid_transition"
    assert await listing_state(session, listing.id) == (50, 0, 0)


# ---------------------------------------------------------------- fulfilment


async def test_pay_pack_ship_track_and_confirm_delivery(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order_id = (
        await place(client, organisation, token, [{"listing_id": str(listing.id), "quantity": 10}])
    ).json()["id"]
    coop = bearer(supply.token)
    # nothing to do for the cooperative until the order is paid
    assert (await client.get(fulfilments_url(supply), headers=coop)).json()["items"] == []
    await orders_service.mark_paid(session, order_id=uuid.UUID(order_id), reference="BANK-42")

    [incoming] = (await client.get(fulfilments_url(supply), headers=coop)).json()["items"]
    assert incoming["order_status"] == "paid"
    assert incoming["deliver_to"]["contact_name"] == "王建国"
    fid = incoming["id"]
    packed = await client.post(fulfilments_url(supply, fid, "pack"), headers=coop)
    assert packed.status_code == 200 and packed.json()["status"] == "packed"
    again = problem(
        await client.post(fulfilments_url(supply, fid, "pack"), headers=coop),
        409,
        "invalid_transition",
    )
    assert again["current_status"] == "packed"

    shipped = await client.post(
        fulfilments_url(supply, fid, "shipments"),
        headers=coop | key(),
        json={"carrier": "顺丰冷运", "tracking_number": "SF1234567890", "cold_chain": False},
    )
    assert shipped.status_code == 201, shipped.text
    body = shipped.json()
    assert body["status"] == "shipped" and body["confirm_by"] is not None
    assert await listing_state(session, listing.id) == (40, 0, 10)  # reserved → sold
    shipment_id = body["shipments"][0]["id"]
    event = await client.post(
        f"/organisations/{supply.cooperative.id}/shipments/{shipment_id}/events",
        headers=coop,
        json={
            "happened_at": "2026-12-02T08:30:00+08:00",
            "location": "北京顺义",
            "description": "已到达转运中心",
        },
    )
    assert event.status_code == 201, event.text

    # shipped: the buyer can no longer cancel
    late = await client.post(
        orders_url(organisation, order_id, "cancel"),
        headers=bearer(token) | key(),
        json={"reason": "太晚"},
    )
    assert problem(late, 409, "already_shipped")["current_status"] == "paid"

    confirmed = await client.post(
        orders_url(organisation, order_id, "fulfilments", fid, "confirm-delivery"),
        headers=bearer(token),
    )
    assert confirmed.status_code == 200, confirmed.text
    order = confirmed.json()
    assert order["status"] == "completed"
    [fulfilment] = order["fulfilments"]
    assert fulfilment["delivery_confirmed_by"] == "buyer"
    assert fulfilment["shipments"][0]["events"][0]["description"] == "已到达转运中心"
    twice = await client.post(
        orders_url(organisation, order_id, "fulfilments", fid, "confirm-delivery"),
        headers=bearer(token),
    )
    assert problem(twice, 409, "invalid_transition")["current_status"] == "delivered"


async def test_unconfirmed_deliveries_confirm_themselves(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order_id = uuid.UUID(
        (
            await place(
                client, organisation, token, [{"listing_id": str(listing.id), "quantity": 5}]
            )
        ).json()["id"]
    )
    await orders_service.mark_paid(session, order_id=order_id, reference="BANK-7")
    [fulfilment] = await orders_service.fulfilments_of(session, [order_id])
    await orders_service.ship(
        session,
        fulfilment_id=fulfilment.id,
        cooperative_id=supply.cooperative.id,
        data={"carrier": "中通", "tracking_number": "ZT1", "cold_chain": False},
        user_id=None,
        auto_confirm_days=10,
    )
    assert await orders_service.auto_confirm(session) == 0  # not due yet
    await session.execute(
        update(Fulfilment).where(Fulfilment.id == fulfilment.id).values(confirm_by=func.now())
    )
    assert await orders_service.auto_confirm(session) == 1
    order = await orders_service.get_order(session, order_id=order_id)
    await session.refresh(order)
    await session.refresh(fulfilment)
    assert (order.status, fulfilment.status, fulfilment.delivery_confirmed_by) == (
        "completed",
        "delivered",
        "auto",
    )


async def test_cancel_before_shipment_releases_the_stock(client, session):
    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order_id = (
        await place(client, organisation, token, [{"listing_id": str(listing.id), "quantity": 8}])
    ).json()["id"]
    await orders_service.mark_paid(session, order_id=uuid.UUID(order_id), reference="BANK-9")
    cancelled = await client.post(
        orders_url(organisation, order_id, "cancel"),
        headers=bearer(token) | key(),
        json={"reason": "采购计划调整"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["fulfilments"][0]["status"] == "cancelled"
    assert await listing_state(session, listing.id) == (50, 0, 0)
    again = await client.post(
        orders_url(organisation, order_id, "cancel"),
        headers=bearer(token) | key(),
        json={"reason": "x"},
    )
    assert problem(again, 409, "invalid_transition")["current_status"] == "cancelled"


def test_every_illegal_transition_names_the_current_status():
    for table, move in (
        (states.ORDER_TRANSITIONS, states.order_transition),
        (states.FULFILMENT_TRANSITIONS, states.fulfilment_transition),
    ):
        statuses = {s for edges in table.values() for pair in edges.items() for s in pair}
        for event, edges in table.items():
            for status in statuses - set(edges):
                try:
                    move(status, event)
                except Conflict as refused:
                    assert refused.extensions == {"current_status": status}
                    assert refused.code == "invalid_transition"
                else:
                    raise AssertionError(f"{event} from {status} was allowed")


# ---------------------------------------------------------------- concurrency and idempotency


async def test_fifty_buyers_race_for_the_last_ten_kilograms(committing_client, committing_session):
    supply = await make_supply(
        committing_session,
        product={"name_zh": "靖远枸杞 散装", "unit": "kg", "box_net_weight_g": None},
    )
    listing = await make_listing(
        committing_session,
        supply,
        quantity=10,
        min_order_quantity=1,
        price_tiers=[],
        unit_price_fen=6000,
    )
    buyers = [await buyer(committing_session) for _ in range(50)]
    await committing_session.commit()

    responses = await asyncio.gather(
        *[
            place(
                committing_client,
                organisation,
                token,
                [{"listing_id": str(listing.id), "quantity": 1}],
            )
            for organisation, token in buyers
        ]
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 10 + [409] * 40, codes
    refusals = [r.json() for r in responses if r.status_code == 409]
    assert {r["code"] for r in refusals} == {"insufficient_stock"}
    assert all("available" in r["detail"] for r in refusals)
    assert await listing_state(committing_session, listing.id) == (0, 10, 0)
    orders = await committing_session.scalar(select(func.count()).select_from(Order))
    assert orders == 10
    # the stock ledger balances: every reservation is one movement of one order
    moved = await committing_session.execute(
        text(
            "SELECT count(*), -sum(quantity), count(DISTINCT reference) FROM stock_movement "
            "WHERE listing_id = :id AND kind = 'reserve'"
        ),
        {"id": listing.id},
    )
    assert tuple(moved.one()) == (10, 10, 10)


async def test_the_same_idempotency_key_twice_at_once_places_one_order(
    committing_client, committing_session
):
    supply = await make_supply(committing_session)
    listing = await make_listing(committing_session, supply)
    organisation, token = await buyer(committing_session)
    await committing_session.commit()
    headers = bearer(token) | {"Idempotency-Key": "order-2026-11-30-001"}
    body = {"lines": [{"listing_id": str(listing.id), "quantity": 5}], **ADDRESS}
    first, second = await asyncio.gather(
        committing_client.post(orders_url(organisation), headers=headers, json=body),
        committing_client.post(orders_url(organisation), headers=headers, json=body),
    )
    statuses = sorted([first.status_code, second.status_code])
    if statuses == [201, 201]:
        assert first.json() == second.json()
    else:  # the second arrived while the first was in flight
        assert statuses == [201, 409], (first.text, second.text)
    assert await committing_session.scalar(select(func.count()).select_from(Order)) == 1
    replay = await committing_client.post(orders_url(organisation), headers=headers, json=body)
    assert replay.status_code == 201
    assert replay.json() == (first if first.status_code == 201 else second).json()
    other = await committing_client.post(
        orders_url(organisation), headers=headers, json={**body, "note": "另一个"}
    )
    assert other.status_code == 422, other.text
    assert await listing_state(committing_session, listing.id) == (45, 5, 0)


# ---------------------------------------------------------------- notifications


async def test_order_events_reach_the_feeds_and_the_email_outbox(client, session):
    from market.notifications import service as notifications_service

    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order_id = uuid.UUID(
        (
            await place(
                client, organisation, token, [{"listing_id": str(listing.id), "quantity": 5}]
            )
        ).json()["id"]
    )
    await orders_service.mark_paid(session, order_id=order_id, reference="BANK-1")
    coop = bearer(supply.token)
    url = f"/organisations/{supply.cooperative.id}/notifications"
    feed = (await client.get(url, headers=coop)).json()
    assert [n["kind"] for n in feed["items"]] == ["order_paid", "order_placed"]
    assert feed["unread"] == 2
    assert "靖远枸杞" in feed["items"][0]["body"] and "× 5" in feed["items"][0]["body"]
    read = await client.post(f"{url}/{feed['items'][1]['id']}/read", headers=coop)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    assert (await client.get(url, headers=coop, params={"unread": "true"})).json()["unread"] == 1
    assert (await client.post(f"{url}/read-all", headers=coop)).json() == {"marked": 1}
    # the buyer does not see the cooperative's feed
    assert (await client.get(url, headers=bearer(token))).status_code == 404

    class Outbox:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str, str]] = []

        async def send(self, *, to: str, subject: str, body: str) -> None:
            self.sent.append((to, subject, body))

    outbox = Outbox()
    assert await notifications_service.send_pending(session, outbox) == 0  # not rendered yet
    assert await notifications_service.write_emails(session) == 2  # the worker's next step
    assert await notifications_service.write_emails(session) == 0
    assert await notifications_service.send_pending(session, outbox) == 2
    to, subject, body = outbox.sent[-1]
    assert to == supply.owner.email
    assert subject.startswith("[农商桥] 订单已付款")
    assert "王建国" not in body and supply.owner.display_name in body
    assert await notifications_service.send_pending(session, outbox) == 0


async def test_a_refused_email_waits_longer_each_time_then_is_given_up(client, session, caplog):
    """A mail server greylisting or rate-limiting: the refused e-mail is not tried again at
    once (it used to come back at the head of every batch and spend its ten attempts within
    seconds), but after 30 s, then twice as long each time; after the tenth it is given up,
    and the log says so."""
    from market.notifications import service as notifications_service
    from market.notifications.models import EmailOutbox

    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    await place(client, organisation, token, [{"listing_id": str(listing.id), "quantity": 5}])
    assert await notifications_service.write_emails(session) == 1

    class Greylisting:
        def __init__(self) -> None:
            self.tries = 0

        async def send(self, *, to: str, subject: str, body: str) -> None:
            self.tries += 1
            raise ConnectionError("451 4.7.1 greylisted, try again later")

    server = Greylisting()
    assert await notifications_service.send_pending(session, server) == 0
    assert await notifications_service.send_pending(session, server) == 0  # not due yet
    assert server.tries == 1
    email = await session.scalar(select(EmailOutbox))
    assert email is not None and email.attempts == 1 and "greylisted" in (email.last_error or "")
    waits = []
    for _ in range(9):  # time passes: each attempt comes when it is due
        waits.append(round((email.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds()))
        await session.execute(
            text("UPDATE email_outbox SET next_attempt_at = now() - interval '1 second'")
        )
        await notifications_service.send_pending(session, server)
        await session.refresh(email)
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3840, 7680]
    assert (server.tries, email.attempts, email.sent_at) == (10, 10, None)
    assert "given up after 10 attempts" in caplog.text
    await session.execute(
        text("UPDATE email_outbox SET next_attempt_at = now() - interval '1 second'")
    )
    assert await notifications_service.send_pending(session, server) == 0
    assert server.tries == 10  # never again


async def test_emails_go_to_the_members_at_rendering_and_two_workers_write_each_once(
    engine, committing_session
):
    """The worker renders a notification's e-mails for the organisation's owners and staff
    as they are then (not viewers, not someone removed meanwhile); two workers claiming at
    once never write an e-mail twice."""
    from market.notifications import service as notifications_service
    from market.notifications.models import EmailOutbox
    from market.organisations.models import Membership
    from tests.factories import add_member, make_org, make_user

    session = committing_session
    owner = await make_user(session, name="赵会计")
    staff, viewer, leaver = [await make_user(session) for _ in range(3)]
    organisations = [await make_org(session, owner=owner) for _ in range(30)]
    first = organisations[0]
    await add_member(session, first, staff, "staff")
    await add_member(session, first, viewer, "viewer")
    await add_member(session, first, leaver, "staff")
    await notifications_service.notify_many(
        session,
        [
            notifications_service.Draft(
                organisation_id=o.id,
                kind="bid_expired",
                subject_type="bid",
                subject_id=uuid.uuid4(),
                context={"title": "靖远枸杞 特级"},
            )
            for o in organisations
        ],
    )
    await session.execute(
        delete(Membership).where(
            Membership.organisation_id == first.id, Membership.user_id == leaver.id
        )
    )
    await session.commit()

    maker = create_sessionmaker(engine)

    async def worker() -> int:
        async with maker() as s, s.begin():
            return await notifications_service.write_emails(s, limit=20)

    handled = await asyncio.gather(worker(), worker())
    assert sorted(handled) == [10, 20]  # 30 notifications: none claimed by both
    async with maker() as s, s.begin():
        assert await notifications_service.write_emails(s, limit=20) == 0
    emails = (await session.execute(select(EmailOutbox.to_address, EmailOutbox.body_text))).all()
    addresses = Counter(to for to, _ in emails)
    assert addresses[owner.email] == 30 and addresses[staff.email] == 1
    assert viewer.email not in addresses and leaver.email not in addresses
    assert len(emails) == 31  # each once
    assert any("赵会计，您好" in body and "靖远枸杞 特级" in body for _, body in emails)


# ---------------------------------------------------------------- disputes


async def test_dispute_answer_and_platform_decision(client, session):
    from tests.factories import platform_operator

    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order = (
        await place(client, organisation, token, [{"listing_id": str(listing.id), "quantity": 10}])
    ).json()
    order_id, fid = order["id"], order["fulfilments"][0]["id"]
    limit = order["fulfilments"][0]["goods_fen"] + order["fulfilments"][0]["logistics_fen"]
    url = orders_url(organisation, order_id, "disputes")
    early = await client.post(
        url,
        headers=bearer(token),
        json={"fulfilment_id": fid, "reason": "quality", "description": "还没付款"},
    )
    assert problem(early, 409, "invalid_transition")["current_status"] == "pending_payment"
    await orders_service.mark_paid(session, order_id=uuid.UUID(order_id), reference="BANK-3")

    too_much = await client.post(
        url,
        headers=bearer(token),
        json={
            "fulfilment_id": fid,
            "reason": "quality",
            "description": "约三成受潮",
            "claimed_fen": limit + 1,
        },
    )
    assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "claimed_fen"
    bad_reason = await client.post(
        url,
        headers=bearer(token),
        json={"fulfilment_id": fid, "reason": "late", "description": "约三成受潮"},
    )
    assert bad_reason.status_code == 422 and bad_reason.json()["errors"][0]["field"] == "reason"
    opened = await client.post(
        url,
        headers=bearer(token),
        json={
            "fulfilment_id": fid,
            "reason": "quality",
            "description": "约三成受潮结块",
            "evidence": ["IMG_2041.jpg"],
            "claimed_fen": 20_000,
        },
    )
    assert opened.status_code == 201, opened.text
    dispute_id = opened.json()["id"]
    assert (await client.get(orders_url(organisation, order_id), headers=bearer(token))).json()[
        "status"
    ] == "disputed"
    second = await client.post(
        url,
        headers=bearer(token),
        json={"fulfilment_id": fid, "reason": "quantity", "description": "少了两箱"},
    )
    problem(second, 409, "dispute_open")

    coop = bearer(supply.token)
    [listed] = (
        await client.get(f"/organisations/{supply.cooperative.id}/disputes", headers=coop)
    ).json()["items"]
    assert listed["id"] == dispute_id
    answered = await client.post(
        f"/organisations/{supply.cooperative.id}/disputes/{dispute_id}/answer",
        headers=coop,
        json={"answer": "同意补偿部分货款"},
    )
    assert answered.json()["status"] == "answered"
    # neither the buyer nor the cooperative can decide
    for headers in (bearer(token), coop):
        refused = await client.post(
            f"/platform/disputes/{dispute_id}/decide",
            headers=headers,
            json={"decision": "full_refund", "note": "平台裁决"},
        )
        assert refused.status_code == 403, refused.text

    _, operator_token = await platform_operator(session)
    operator = bearer(operator_token)
    assert [
        d["id"] for d in (await client.get("/platform/disputes", headers=operator)).json()["items"]
    ] == [dispute_id]
    partial_too_big = await client.post(
        f"/platform/disputes/{dispute_id}/decide",
        headers=operator,
        json={"decision": "partial_refund", "refund_fen": limit, "note": "核实"},
    )
    assert (
        partial_too_big.status_code == 422
        and partial_too_big.json()["errors"][0]["field"] == "refund_fen"
    )
    decided = await client.post(
        f"/platform/disputes/{dispute_id}/decide",
        headers=operator,
        json={"decision": "partial_refund", "refund_fen": 15_000, "note": "照片属实，退一部分"},
    )
    assert decided.status_code == 200, decided.text
    assert (decided.json()["decision"], decided.json()["refund_fen"]) == ("partial_refund", 15_000)
    # nothing had shipped: the order is paid again and its part can still be fulfilled
    assert (await client.get(orders_url(organisation, order_id), headers=bearer(token))).json()[
        "status"
    ] == "paid"
    again = await client.post(
        f"/platform/disputes/{dispute_id}/decide",
        headers=operator,
        json={"decision": "reject", "note": "平台裁决"},
    )
    assert problem(again, 409, "invalid_transition")["current_status"] == "decided"
    # another buyer does not see it
    other, other_token = await buyer(session)
    hidden = await client.get(orders_url(other, order_id, "disputes"), headers=bearer(other_token))
    assert hidden.status_code == 404


async def test_a_dispute_holds_its_own_part_and_the_other_parts_go_on(client, session):
    """A dispute is about one cooperative's part: while it waits for the platform, that part
    cannot be packed, shipped or declined, and the order's other parts are fulfilled as usual;
    the decision completes the order once every part is delivered."""
    from tests.factories import platform_operator

    first, second = await make_supply(session), await make_supply(session, region_code="640502")
    listings = [await make_listing(session, s) for s in (first, second)]
    organisation, token = await buyer(session)
    order = (
        await place(
            client,
            organisation,
            token,
            [{"listing_id": str(listing.id), "quantity": 10} for listing in listings],
        )
    ).json()
    await orders_service.mark_paid(session, order_id=uuid.UUID(order["id"]), reference="BANK-7")
    part = {f["cooperative_id"]: f["id"] for f in order["fulfilments"]}
    disputed, going_on = part[str(first.cooperative.id)], part[str(second.cooperative.id)]
    opened = await client.post(
        orders_url(organisation, order["id"], "disputes"),
        headers=bearer(token),
        json={"fulfilment_id": disputed, "reason": "not_delivered", "description": "一周未发货"},
    )
    assert opened.status_code == 201, opened.text

    held = bearer(first.token)
    for action, extra in (("pack", {}), ("decline", {"json": {"reason": "缺货"}})):
        refused = await client.post(
            fulfilments_url(first, disputed, action), headers=held | key(), **extra
        )
        assert problem(refused, 409, "dispute_open")["current_status"] == "disputed", action
    coop = bearer(second.token)
    packed = await client.post(fulfilments_url(second, going_on, "pack"), headers=coop)
    assert packed.status_code == 200, packed.text
    shipped = await client.post(
        fulfilments_url(second, going_on, "shipments"),
        headers=coop | key(),
        json={"carrier": "顺丰", "tracking_number": "SF7", "cold_chain": False},
    )
    assert shipped.status_code == 201, shipped.text
    delivered = await client.post(
        orders_url(organisation, order["id"], "fulfilments", going_on, "confirm-delivery"),
        headers=bearer(token),
    )
    assert delivered.status_code == 200, delivered.text

    _, operator_token = await platform_operator(session)
    decided = await client.post(
        f"/platform/disputes/{opened.json()['id']}/decide",
        headers=bearer(operator_token),
        json={"decision": "reject", "note": "已联系合作社"},
    )
    assert decided.status_code == 200, decided.text
    assert (await client.get(orders_url(organisation, order["id"]), headers=bearer(token))).json()[
        "status"
    ] == "paid"
    # the decided part can go on now
    packed = await client.post(fulfilments_url(first, disputed, "pack"), headers=held)
    assert packed.status_code == 200, packed.text


async def test_a_decided_dispute_before_shipment_lets_the_order_go_on_and_caps_refunds(
    client, session
):
    from tests.factories import platform_operator

    supply = await make_supply(session)
    listing = await make_listing(session, supply)
    organisation, token = await buyer(session)
    order = (
        await place(client, organisation, token, [{"listing_id": str(listing.id), "quantity": 10}])
    ).json()
    order_id, fid = order["id"], order["fulfilments"][0]["id"]
    await orders_service.mark_paid(session, order_id=uuid.UUID(order_id), reference="BANK-8")
    url = orders_url(organisation, order_id, "disputes")
    body = {"fulfilment_id": fid, "reason": "not_delivered", "description": "迟迟未发货"}
    dispute_id = (await client.post(url, headers=bearer(token), json=body)).json()["id"]
    _, operator_token = await platform_operator(session)
    decided = await client.post(
        f"/platform/disputes/{dispute_id}/decide",
        headers=bearer(operator_token),
        json={"decision": "full_refund", "note": "全额退款"},
    )
    assert decided.status_code == 200, decided.text
    # nothing was delivered: the order is paid again, its part can still ship
    assert (await client.get(orders_url(organisation, order_id), headers=bearer(token))).json()[
        "status"
    ] == "paid"
    shipped = await client.post(
        fulfilments_url(supply, fid, "shipments"),
        headers=bearer(supply.token) | key(),
        json={"carrier": "中通", "tracking_number": "ZT9"},
    )
    assert shipped.status_code == 201, shipped.text
    # refunded in full once: no second claim on the same part
    again = await client.post(url, headers=bearer(token), json={**body, "reason": "quality"})
    problem(again, 409, "fully_refunded")


def test_a_fee_of_half_a_fen_goes_to_the_even_neighbour() -> None:
    # 1 % of 0.50, 1.50, 2.50 yuan is half a fen; of 0.49 and 0.51 yuan, just under and over
    assert [orders_service.fee_fen(g, 100) for g in (50, 150, 250, 49, 51)] == [0, 2, 2, 0, 1]


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=0, max_value=10_000))
def test_the_fee_is_rounded_half_even_to_a_whole_fen(goods_fen: int, fee_bps: int) -> None:
    """The fee in integers against the exact decimal product, rounded half to even."""
    exact = Decimal(goods_fen) * fee_bps / 10_000
    expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert orders_service.fee_fen(goods_fen, fee_bps) == expected
