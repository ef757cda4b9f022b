"""HTTP: buyers' bids (place, read, withdraw, accept a counter-offer); cooperatives' incoming
bids (accept fully or partly, reject, counter) and auction results."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from market.deps import PrincipalDep, SessionDep, SettingsDep, idempotent
from market.errors import NotFound
from market.idempotency.service import Claim
from market.listings import service as listings_service
from market.orders import service as orders_service
from market.organisations import service as organisations_service
from market.pagination import PageDep
from market.routing import MarketRoute
from market.trading import service
from market.trading.models import Bid
from market.trading.schemas import (
    AuctionResultRead,
    BidAccept,
    BidCreate,
    BidPage,
    BidRead,
    BidReject,
    CounterCreate,
    CounterRead,
)

router = APIRouter(route_class=MarketRoute, tags=["trading"])
StockMoving = Annotated[Claim | None, Depends(idempotent(required=True))]
Retryable = Annotated[Claim | None, Depends(idempotent(required=False))]


async def _reads(session: AsyncSession, bids: list[Bid]) -> list[BidRead]:
    counters = await service.counters_of(session, [b.id for b in bids])
    by_bid: dict[uuid.UUID, list[CounterRead]] = defaultdict(list)
    for counter in counters:
        by_bid[counter.bid_id].append(CounterRead.model_validate(counter))
    titles = await listings_service.titles_of(session, (b.listing_id for b in bids))
    return [
        BidRead(
            id=b.id,
            kind=b.kind,
            listing_id=b.listing_id,
            listing_title_zh=titles[b.listing_id],
            cooperative_id=b.cooperative_id,
            buyer_id=b.buyer_id,
            status=b.status,
            unit_price_fen=b.unit_price_fen,
            quantity=b.quantity,
            partial_ok=b.partial_ok,
            expires_at=b.expires_at,
            destination_code=b.destination_code,
            filled_quantity=b.filled_quantity,
            outcome_reason=b.outcome_reason,
            order_id=b.order_id,
            created_at=b.created_at,
            counters=by_bid[b.id],
        )
        for b in bids
    ]


async def _read(session: AsyncSession, bid: Bid) -> BidRead:
    await session.refresh(bid)
    return (await _reads(session, [bid]))[0]


# ---------------------------------------------------------------- buyers


@router.post(
    "/organisations/{organisation_id}/bids",
    status_code=status.HTTP_201_CREATED,
    summary="Bid on a negotiable listing, or place a sealed bid on an auction",
    description="Negotiation bids stand until `expires_at` or the cooperative's answer. "
    "Auction bids are sealed until the close; one in the last minutes extends the close. "
    "An `Idempotency-Key` makes a retry safe.",
)
async def place_bid(
    organisation_id: uuid.UUID,
    body: BidCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    _: Retryable,
) -> BidRead:
    buyer = await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    bid = await service.place_bid(
        session,
        buyer=buyer,
        user_id=principal.user_id,
        data=body.model_dump(),
        snipe_minutes=settings.auction_snipe_minutes,
        snipe_max_extensions=settings.auction_max_extensions,
    )
    return await _read(session, bid)


@router.get("/organisations/{organisation_id}/bids", summary="The buyer's bids, newest first")
async def list_bids(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> BidPage:
    await organisations_service.buyer_access(session, principal, organisation_id, domain="orders")
    bids, cursor = await service.list_bids(session, page=page, buyer_id=organisation_id)
    return BidPage(items=await _reads(session, bids), next_cursor=cursor)


@router.get("/organisations/{organisation_id}/bids/{bid_id}", summary="One of the buyer's bids")
async def get_bid(
    organisation_id: uuid.UUID, bid_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> BidRead:
    await organisations_service.buyer_access(session, principal, organisation_id, domain="orders")
    return await _read(
        session, await service.get_bid(session, bid_id=bid_id, buyer_id=organisation_id)
    )


@router.post("/organisations/{organisation_id}/bids/{bid_id}/withdraw", summary="Withdraw")
async def withdraw_bid(
    organisation_id: uuid.UUID, bid_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> BidRead:
    await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    bid = await service.withdraw_bid(session, bid_id=bid_id, buyer_id=organisation_id)
    return await _read(session, bid)


@router.post(
    "/organisations/{organisation_id}/bids/{bid_id}/counters/{counter_id}/accept",
    summary="Accept the cooperative's counter-offer (reserves the stock, creates the order)",
)
async def accept_counter(
    organisation_id: uuid.UUID,
    bid_id: uuid.UUID,
    counter_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    _: StockMoving,
) -> BidRead:
    await organisations_service.buyer_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    bid = await service.accept_counter(
        session,
        bid_id=bid_id,
        counter_id=counter_id,
        buyer_id=organisation_id,
        terms=orders_service.order_terms(settings),
        user_id=principal.user_id,
    )
    return await _read(session, bid)


# ---------------------------------------------------------------- cooperatives


@router.get(
    "/organisations/{organisation_id}/incoming-bids",
    summary="Bids on the cooperative's negotiable listings (auction bids stay sealed)",
)
async def incoming_bids(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    listing_id: Annotated[uuid.UUID | None, Query()] = None,
) -> BidPage:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    bids, cursor = await service.list_bids(
        session, page=page, cooperative_id=organisation_id, listing_id=listing_id
    )
    return BidPage(items=await _reads(session, bids), next_cursor=cursor)


@router.post(
    "/organisations/{organisation_id}/incoming-bids/{bid_id}/accept",
    summary="Accept a bid, fully or partly (reserves the stock, creates the order)",
)
async def accept_bid(
    organisation_id: uuid.UUID,
    bid_id: uuid.UUID,
    body: BidAccept,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    _: StockMoving,
) -> BidRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    bid = await service.accept_bid(
        session,
        bid_id=bid_id,
        cooperative_id=organisation_id,
        quantity=body.quantity,
        terms=orders_service.order_terms(settings),
        user_id=principal.user_id,
    )
    return await _read(session, bid)


@router.post(
    "/organisations/{organisation_id}/incoming-bids/{bid_id}/reject", summary="Reject a bid"
)
async def reject_bid(
    organisation_id: uuid.UUID,
    bid_id: uuid.UUID,
    body: BidReject,
    principal: PrincipalDep,
    session: SessionDep,
) -> BidRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    bid = await service.reject_bid(
        session, bid_id=bid_id, cooperative_id=organisation_id, reason=body.reason
    )
    return await _read(session, bid)


@router.post(
    "/organisations/{organisation_id}/incoming-bids/{bid_id}/counter",
    status_code=status.HTTP_201_CREATED,
    summary="Counter a bid with other price, quantity or expiry",
)
async def counter_bid(
    organisation_id: uuid.UUID,
    bid_id: uuid.UUID,
    body: CounterCreate,
    principal: PrincipalDep,
    session: SessionDep,
) -> BidRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders", write=True
    )
    counter = await service.counter_bid(
        session,
        bid_id=bid_id,
        cooperative_id=organisation_id,
        data=body.model_dump(),
        user_id=principal.user_id,
    )
    return await _read(session, await service.get_bid(session, bid_id=counter.bid_id))


@router.get(
    "/organisations/{organisation_id}/listings/{listing_id}/auction-result",
    summary="An auction's result: every bid with its outcome (after the clearing)",
)
async def auction_result(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> AuctionResultRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="orders"
    )
    await listings_service.get_listing(
        session, listing_id=listing_id, cooperative_id=organisation_id
    )
    result = await service.auction_result(session, listing_id)
    if result is None:
        raise NotFound("This auction has not been cleared yet.")
    reads = await _reads(session, await service.auction_bids(session, listing_id))
    return AuctionResultRead(
        listing_id=listing_id,
        cleared_at=result.cleared_at,
        quantity_offered=result.quantity_offered,
        quantity_allocated=result.quantity_allocated,
        revenue_fen=result.revenue_fen,
        bids=reads,
    )
