"""HTTP: buyers' orders (place, read, cancel, confirm delivery) and cooperatives' fulfilments
(incoming work, pack, ship, tracking events)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from market.deps import PrincipalDep, SessionDep, SettingsDep, idempotent
from market.idempotency.service import Claim
from market.orders import service
from market.orders.models import Fulfilment, Order
from market.orders.schemas import (
    DeliveryAddress,
    DisputeAnswer,
    DisputeCreate,
    DisputeDecision,
    DisputePage,
    DisputeRead,
    FulfilmentDecline,
    FulfilmentPage,
    FulfilmentRead,
    FulfilmentStatus,
    IncomingFulfilmentRead,
    OrderCancel,
    OrderCreate,
    OrderLineRead,
    OrderPage,
    OrderRead,
    OrderStatus,
    ShipmentCreate,
    ShipmentRead,
    TrackingEventCreate,
    TrackingEventRead,
)
from market.organisations import service as organisations_service
from market.pagination import PageDep
from market.routing import MarketRoute

router = APIRouter(route_class=MarketRoute, tags=["orders"])
StockMoving = Annotated[Claim | None, Depends(idempotent(required=True))]


def _deliver_to(order: Order) -> DeliveryAddress:
    return DeliveryAddress(
        destination_code=order.destination_code,
        address=order.address,
        contact_name=order.contact_name,
        contact_phone=order.contact_phone,
    )


async def _fulfilment_reads(
    session: AsyncSession, fulfilments: list[Fulfilment]
) -> dict[uuid.UUID, FulfilmentRead]:
    """Fulfilments with their lines, shipments and tracking events, in a few queries."""
    order_ids = list({f.order_id for f in fulfilments})
    lines = await service.lines_of(session, order_ids)
    shipments = await service.shipments_of(session, [f.id for f in fulfilments])
    events = await service.events_of(session, [s.id for s in shipments])
    events_by: dict[uuid.UUID, list[TrackingEventRead]] = defaultdict(list)
    for event in events:
        events_by[event.shipment_id].append(TrackingEventRead.model_validate(event))
    shipments_by: dict[uuid.UUID, list[ShipmentRead]] = defaultdict(list)
    for shipment in shipments:
        read = ShipmentRead.model_validate(shipment)
        read.events = events_by[shipment.id]
        shipments_by[shipment.fulfilment_id].append(read)
    lines_by: dict[uuid.UUID, list[OrderLineRead]] = defaultdict(list)
    for line in lines:
        lines_by[line.fulfilment_id].append(OrderLineRead.model_validate(line))
    names = await organisations_service.names_of(session, (f.cooperative_id for f in fulfilments))
    return {
        f.id: FulfilmentRead(
            id=f.id,
            order_id=f.order_id,
            cooperative_id=f.cooperative_id,
            cooperative_name_zh=names[f.cooperative_id],
            status=f.status,
            goods_fen=f.goods_fen,
            logistics_fen=f.logistics_fen,
            transit_days=f.transit_days,
            packed_at=f.packed_at,
            shipped_at=f.shipped_at,
            confirm_by=f.confirm_by,
            delivered_at=f.delivered_at,
            delivery_confirmed_by=f.delivery_confirmed_by,
            cancelled_at=f.cancelled_at,
            decline_reason=f.decline_reason,
            lines=lines_by[f.id],
            shipments=shipments_by[f.id],
        )
        for f in fulfilments
    }


async def _order_reads(session: AsyncSession, orders: list[Order]) -> list[OrderRead]:
    fulfilments = await service.fulfilments_of(session, [o.id for o in orders])
    reads = await _fulfilment_reads(session, fulfilments)
    by_order: dict[uuid.UUID, list[FulfilmentRead]] = defaultdict(list)
    for fulfilment in fulfilments:
        by_order[fulfilment.order_id].append(reads[fulfilment.id])
    return [
        OrderRead(
            id=o.id,
            buyer_id=o.buyer_id,
            status=o.status,
            source=o.source,
            currency=o.currency,
            goods_fen=o.goods_fen,
            logistics_fen=o.logistics_fen,
            fee_fen=o.fee_fen,
            fee_bps=o.fee_bps,
            total_fen=o.total_fen,
            deliver_to=_deliver_to(o),
            note=o.note,
            payment_due_at=o.payment_due_at,
            paid_at=o.paid_at,
            cancelled_at=o.cancelled_at,
            cancel_reason=o.cancel_reason,
            created_at=o.created_at,
            fulfilments=by_order[o.id],
        )
        for o in orders
    ]


async def _order_read(session: AsyncSession, order: Order) -> OrderRead:
    await session.refresh(order)
    return (await _order_reads(session, [order]))[0]


async def _incoming_reads(
    session: AsyncSession, fulfilments: list[Fulfilment]
) -> list[IncomingFulfilmentRead]:
    reads = await _fulfilment_reads(session, fulfilments)
    orders = await service.orders_by_id(session, [f.order_id for f in fulfilments])
    out = []
    for fulfilment in fulfilments:
        order = orders[fulfilment.order_id]
        out.append(
            IncomingFulfilmentRead(
                **reads[fulfilment.id].model_dump(),
                order_status=order.status,
                deliver_to=_deliver_to(order),
            )
        )
    return out


# ---------------------------------------------------------------- buyers


@router.post(
    "/organisations/{organisation_id}/orders",
    status_code=status.HTTP_201_CREATED,
    summary="Place an order (reserves the stock until payment)",
    description="Lines of `fixed` listings; two lines of one listing count as one (price tier "
    "and minimum order apply to the sum). The order totals goods (tier prices), freight per "
    "cooperative and the platform fee in fen, and holds the stock until `payment_due_at`. "
    "Needs an `Idempotency-Key`.",
)
async def place_order(
    organisation_id: uuid.UUID,
    body: OrderCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    _: StockMoving,
) -> OrderRead:
    buyer = await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    order = await service.place_order(
        session,
        buyer=buyer,
        user_id=principal.user_id,
        data=body.model_dump(),
        terms=service.order_terms(settings),
    )
    return await _order_read(session, order)


@router.get("/organisations/{organisation_id}/orders", summary="The buyer's orders, newest first")
async def list_orders(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> OrderPage:
    await organisations_service.buyer_access(session, principal, organisation_id, domain="orders")
    orders, cursor = await service.list_orders(
        session, buyer_id=organisation_id, page=page, status=order_status
    )
    return OrderPage(items=await _order_reads(session, orders), next_cursor=cursor)


@router.get("/organisations/{organisation_id}/orders/{order_id}", summary="One order")
async def get_order(
    organisation_id: uuid.UUID, order_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> OrderRead:
    await organisations_service.buyer_access(session, principal, organisation_id, domain="orders")
    order = await service.get_order(session, order_id=order_id, buyer_id=organisation_id)
    return await _order_read(session, order)


@router.post(
    "/organisations/{organisation_id}/orders/{order_id}/cancel",
    summary="Cancel an order before anything has shipped (the stock goes back)",
)
async def cancel_order(
    organisation_id: uuid.UUID,
    order_id: uuid.UUID,
    body: OrderCancel,
    principal: PrincipalDep,
    session: SessionDep,
    _: StockMoving,
) -> OrderRead:
    await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    order = await service.cancel_order(
        session, order_id=order_id, buyer_id=organisation_id, reason=body.reason
    )
    return await _order_read(session, order)


@router.post(
    "/organisations/{organisation_id}/orders/{order_id}/fulfilments/{fulfilment_id}/confirm-delivery",
    summary="Confirm that a cooperative's goods arrived",
)
async def confirm_delivery(
    organisation_id: uuid.UUID,
    order_id: uuid.UUID,
    fulfilment_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> OrderRead:
    await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    await service.confirm_delivery(
        session, order_id=order_id, fulfilment_id=fulfilment_id, buyer_id=organisation_id
    )
    order = await service.get_order(session, order_id=order_id, buyer_id=organisation_id)
    return await _order_read(session, order)


# ---------------------------------------------------------------- cooperatives


@router.get(
    "/organisations/{organisation_id}/fulfilments",
    summary="Orders to fulfil: the cooperative's part of each paid order",
)
async def list_fulfilments(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    fulfilment_status: Annotated[FulfilmentStatus | None, Query(alias="status")] = None,
) -> FulfilmentPage:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    fulfilments, cursor = await service.list_fulfilments(
        session, cooperative_id=organisation_id, page=page, status=fulfilment_status
    )
    return FulfilmentPage(items=await _incoming_reads(session, fulfilments), next_cursor=cursor)


@router.get("/organisations/{organisation_id}/fulfilments/{fulfilment_id}", summary="One")
async def get_fulfilment(
    organisation_id: uuid.UUID,
    fulfilment_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> IncomingFulfilmentRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    fulfilment = await service.get_fulfilment(
        session, fulfilment_id=fulfilment_id, cooperative_id=organisation_id
    )
    return (await _incoming_reads(session, [fulfilment]))[0]


@router.post(
    "/organisations/{organisation_id}/fulfilments/{fulfilment_id}/pack",
    summary="Mark the goods packed",
)
async def pack(
    organisation_id: uuid.UUID,
    fulfilment_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> IncomingFulfilmentRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    fulfilment = await service.pack(
        session, fulfilment_id=fulfilment_id, cooperative_id=organisation_id
    )
    return (await _incoming_reads(session, [fulfilment]))[0]


@router.post(
    "/organisations/{organisation_id}/fulfilments/{fulfilment_id}/decline",
    summary="Decline this part of the order (cannot supply it)",
    description="Before shipping: the reserved stock is released and the buyer is not "
    "charged for this part (a card authorisation is captured without it; money already "
    "received is refunded). When every part is declined the order is cancelled. Needs an "
    "`Idempotency-Key`.",
)
async def decline(
    organisation_id: uuid.UUID,
    fulfilment_id: uuid.UUID,
    body: FulfilmentDecline,
    principal: PrincipalDep,
    session: SessionDep,
    _: StockMoving,
) -> IncomingFulfilmentRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    fulfilment = await service.decline(
        session, fulfilment_id=fulfilment_id, cooperative_id=organisation_id, reason=body.reason
    )
    return (await _incoming_reads(session, [fulfilment]))[0]


@router.post(
    "/organisations/{organisation_id}/fulfilments/{fulfilment_id}/shipments",
    status_code=status.HTTP_201_CREATED,
    summary="Ship: hand the goods to a carrier (the reserved stock is sold)",
    description="Needs an `Idempotency-Key`. Delivery is confirmed automatically "
    "`MARKET_DELIVERY_AUTO_CONFIRM_DAYS` after shipment unless the buyer confirms first.",
)
async def ship(
    organisation_id: uuid.UUID,
    fulfilment_id: uuid.UUID,
    body: ShipmentCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    _: StockMoving,
) -> IncomingFulfilmentRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    await service.ship(
        session,
        fulfilment_id=fulfilment_id,
        cooperative_id=organisation_id,
        data=body.model_dump(),
        user_id=principal.user_id,
        auto_confirm_days=settings.delivery_auto_confirm_days,
    )
    fulfilment = await service.get_fulfilment(
        session, fulfilment_id=fulfilment_id, cooperative_id=organisation_id
    )
    return (await _incoming_reads(session, [fulfilment]))[0]


@router.post(
    "/organisations/{organisation_id}/shipments/{shipment_id}/events",
    status_code=status.HTTP_201_CREATED,
    summary="Record a tracking event of a shipment",
)
async def add_tracking_event(
    organisation_id: uuid.UUID,
    shipment_id: uuid.UUID,
    body: TrackingEventCreate,
    principal: PrincipalDep,
    session: SessionDep,
) -> TrackingEventRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    event = await service.add_tracking_event(
        session, shipment_id=shipment_id, cooperative_id=organisation_id, data=body.model_dump()
    )
    return TrackingEventRead.model_validate(event)


# ---------------------------------------------------------------- disputes


@router.post(
    "/organisations/{organisation_id}/orders/{order_id}/disputes",
    status_code=status.HTTP_201_CREATED,
    summary="Open a dispute about one cooperative's part of the order",
)
async def open_dispute(
    organisation_id: uuid.UUID,
    order_id: uuid.UUID,
    body: DisputeCreate,
    principal: PrincipalDep,
    session: SessionDep,
) -> DisputeRead:
    await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    dispute = await service.open_dispute(
        session,
        order_id=order_id,
        buyer_id=organisation_id,
        user_id=principal.user_id,
        data=body.model_dump(),
    )
    return DisputeRead.model_validate(dispute)


@router.get(
    "/organisations/{organisation_id}/orders/{order_id}/disputes", summary="An order's disputes"
)
async def order_disputes(
    organisation_id: uuid.UUID,
    order_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
) -> DisputePage:
    await organisations_service.buyer_access(session, principal, organisation_id, domain="orders")
    await service.get_order(session, order_id=order_id, buyer_id=organisation_id)
    disputes, cursor = await service.list_disputes(session, page=page, order_id=order_id)
    return DisputePage(items=[DisputeRead.model_validate(d) for d in disputes], next_cursor=cursor)


@router.get(
    "/organisations/{organisation_id}/disputes",
    summary="Disputes about the cooperative's fulfilments",
)
async def cooperative_disputes(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> DisputePage:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    disputes, cursor = await service.list_disputes(
        session, page=page, cooperative_id=organisation_id
    )
    return DisputePage(items=[DisputeRead.model_validate(d) for d in disputes], next_cursor=cursor)


@router.post(
    "/organisations/{organisation_id}/disputes/{dispute_id}/answer",
    summary="The cooperative's answer to a dispute",
)
async def answer_dispute(
    organisation_id: uuid.UUID,
    dispute_id: uuid.UUID,
    body: DisputeAnswer,
    principal: PrincipalDep,
    session: SessionDep,
) -> DisputeRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    dispute = await service.answer_dispute(
        session,
        dispute_id=dispute_id,
        cooperative_id=organisation_id,
        user_id=principal.user_id,
        answer=body.answer,
    )
    return DisputeRead.model_validate(dispute)


@router.get("/platform/disputes", tags=["platform"], summary="Disputes awaiting a decision")
async def platform_disputes(
    principal: PrincipalDep, session: SessionDep, page: PageDep
) -> DisputePage:
    await organisations_service.require_platform_operator(session, principal)
    disputes, cursor = await service.list_disputes(session, page=page, undecided=True)
    return DisputePage(items=[DisputeRead.model_validate(d) for d in disputes], next_cursor=cursor)


@router.post(
    "/platform/disputes/{dispute_id}/decide",
    tags=["platform"],
    summary="Decide a dispute: reject, partial or full refund (the refund itself is payments')",
)
async def decide_dispute(
    dispute_id: uuid.UUID, body: DisputeDecision, principal: PrincipalDep, session: SessionDep
) -> DisputeRead:
    await organisations_service.require_platform_operator(session, principal)
    dispute = await service.decide_dispute(
        session,
        dispute_id=dispute_id,
        operator_id=principal.user_id,
        decision=body.decision,
        refund_fen=body.refund_fen,
        note=body.note,
    )
    return DisputeRead.model_validate(dispute)
