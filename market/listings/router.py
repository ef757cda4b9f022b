"""HTTP: cooperatives' listings, their lifecycle and stock adjustments; public reads of
active listings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.routing import Route

from market.db import plain_url
from market.deps import Idempotent, PrincipalDep, SessionDep, idempotent
from market.idempotency.service import Claim
from market.listings import service
from market.listings.models import Listing, ListingPriceTier
from market.listings.schemas import (
    ListingCreate,
    ListingRead,
    ListingUpdate,
    PriceTierRead,
    PublicListingPage,
    PublicListingRead,
    SaleMode,
    Status,
    StockAdjusted,
    StockAdjustment,
    StockMovementRead,
)
from market.organisations import service as organisations_service
from market.pagination import Page, PageDep
from market.routing import MarketRoute

router = APIRouter(route_class=MarketRoute)
TAG = "listings"
StockMoving = Annotated[Claim | None, Depends(idempotent(required=True))]


def listing_read(listing: Listing, tiers: list[ListingPriceTier], warning: bool) -> ListingRead:
    return ListingRead(
        id=listing.id,
        cooperative_id=listing.cooperative_id,
        lot_id=listing.lot_id,
        product_id=listing.product_id,
        title_zh=listing.title_zh,
        title_en=listing.title_en,
        description=listing.description,
        sale_mode=listing.sale_mode,
        status=listing.status,
        unit_price_fen=listing.unit_price_fen,
        price_tiers=[
            PriceTierRead(min_quantity=t.min_quantity, unit_price_fen=t.unit_price_fen)
            for t in tiers
        ],
        unit_size=listing.unit_size,
        min_order_quantity=listing.min_order_quantity,
        quantity_listed=listing.quantity_listed,
        quantity_available=listing.quantity_available,
        quantity_reserved=listing.quantity_reserved,
        quantity_sold=listing.quantity_sold,
        delivery_terms=listing.delivery_terms,
        pickup_hub=listing.pickup_hub,
        valid_from=listing.valid_from,
        valid_until=listing.valid_until,
        auction_closes_at=listing.auction_closes_at,
        reserve_price_fen=listing.reserve_price_fen,
        certification_ids=list(listing.certification_ids),
        certification_warning=warning,
        published_at=listing.published_at,
        created_at=listing.created_at,
        updated_at=listing.updated_at,
    )


async def _reads(session: AsyncSession, listings: list[Listing]) -> list[ListingRead]:
    ids = [x.id for x in listings]
    tiers = await service.tiers_of(session, ids)
    warnings = await service.certification_warnings(session, listings)
    return [listing_read(x, tiers[x.id], warnings[x.id]) for x in listings]


async def _read(session: AsyncSession, listing: Listing) -> ListingRead:
    return (await _reads(session, [listing]))[0]


@asynccontextmanager
async def _autocommit_connection(bind: Any) -> AsyncIterator[AsyncConnection]:
    """A connection for a one-statement public read, in autocommit: no ORM session and no
    BEGIN/COMMIT round trips (one statement sees one consistent snapshot anyway). When the
    app is bound to a connection (tests), that connection is used as it is."""
    if isinstance(bind, AsyncConnection):
        yield bind
        return
    async with bind.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


async def read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with _autocommit_connection(request.app.state.sessionmaker.kw["bind"]) as connection:
        yield connection


ReadConnection = Annotated[AsyncConnection, Depends(read_connection)]


def _json(content: Any) -> Response:
    # the public read path: plain data straight to JSON, no model validation on the way out
    return Response(orjson.dumps(content, option=orjson.OPT_UTC_Z), media_type="application/json")


# ---------------------------------------------------------------- cooperatives


@router.post(
    "/organisations/{organisation_id}/listings",
    tags=[TAG],
    status_code=status.HTTP_201_CREATED,
    response_model=ListingRead,
    summary="Create a draft listing from a lot",
)
async def create_listing(
    organisation_id: uuid.UUID,
    body: ListingCreate,
    principal: PrincipalDep,
    session: SessionDep,
    _: StockMoving,
) -> ListingRead:
    """Takes `quantity` units of sale from the lot: 409 `mass_balance` when the lot does not
    hold them on top of what its other listings already took. Publish it next."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="listings", write=True
    )
    listing = await service.create_listing(
        session,
        cooperative_id=organisation_id,
        data=body.model_dump(),
        user_id=principal.user_id,
    )
    return await _read(session, listing)


@router.get(
    "/organisations/{organisation_id}/listings",
    tags=[TAG],
    response_model=Page[ListingRead],
    summary="The cooperative's listings, newest first",
)
async def list_listings(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    listing_status: Annotated[Status | None, Query(alias="status")] = None,
    lot_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[ListingRead]:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="listings"
    )
    listings, cursor = await service.list_listings(
        session, cooperative_id=organisation_id, page=page, status=listing_status, lot_id=lot_id
    )
    return Page(items=await _reads(session, listings), next_cursor=cursor)


@router.get(
    "/organisations/{organisation_id}/listings/{listing_id}",
    tags=[TAG],
    response_model=ListingRead,
    summary="A listing with every stock figure, in any status",
)
async def get_listing(
    organisation_id: uuid.UUID, listing_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ListingRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="listings"
    )
    listing = await service.get_listing(
        session, listing_id=listing_id, cooperative_id=organisation_id
    )
    return await _read(session, listing)


@router.patch(
    "/organisations/{organisation_id}/listings/{listing_id}",
    tags=[TAG],
    response_model=ListingRead,
    summary="Change price, tiers, title, description, window or certificates",
)
async def update_listing(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    body: ListingUpdate,
    principal: PrincipalDep,
    session: SessionDep,
) -> ListingRead:
    """The quantity changes through stock adjustments only. `price_tiers` replaces them all."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="listings", write=True
    )
    listing = await service.get_listing(
        session, listing_id=listing_id, cooperative_id=organisation_id
    )
    listing = await service.update_listing(
        session, listing=listing, changes=body.model_dump(exclude_unset=True)
    )
    return await _read(session, listing)


async def _act(
    event: str,
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    principal: PrincipalDep,
    session: AsyncSession,
) -> ListingRead:
    organisation = await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="listings", write=True
    )
    listing = await service.get_listing(
        session, listing_id=listing_id, cooperative_id=organisation_id
    )
    listing = await service.act(
        session,
        listing=listing,
        organisation=organisation,
        event=event,
        user_id=principal.user_id,
    )
    return await _read(session, listing)


@router.post(
    "/organisations/{organisation_id}/listings/{listing_id}/publish",
    tags=[TAG],
    response_model=ListingRead,
    summary="Publish a draft (verified cooperatives)",
)
async def publish(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> ListingRead:
    """draft → active (sold_out when nothing is available). Refused while the window is over,
    an auction's bidding has closed, or a claimed certificate has expired."""
    return await _act("publish", organisation_id, listing_id, principal, session)


@router.post(
    "/organisations/{organisation_id}/listings/{listing_id}/pause",
    tags=[TAG],
    response_model=ListingRead,
    summary="Pause an active or sold-out listing",
)
async def pause(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> ListingRead:
    """Refused (409 `auction_running`) for a published auction: it runs until its clearing."""
    return await _act("pause", organisation_id, listing_id, principal, session)


@router.post(
    "/organisations/{organisation_id}/listings/{listing_id}/resume",
    tags=[TAG],
    response_model=ListingRead,
    summary="Resume a paused listing",
)
async def resume(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> ListingRead:
    return await _act("resume", organisation_id, listing_id, principal, session)


@router.post(
    "/organisations/{organisation_id}/listings/{listing_id}/close",
    tags=[TAG],
    response_model=ListingRead,
    summary="Close a listing for good",
)
async def close(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> ListingRead:
    """Final. The available rest goes back to the lot (a `close` movement); reserved units
    stay until they are sold or released. Refused (409 `auction_running`) for a published
    auction: its clearing closes it."""
    return await _act("close", organisation_id, listing_id, principal, session)


@router.post(
    "/organisations/{organisation_id}/listings/{listing_id}/stock-adjustments",
    tags=[TAG],
    status_code=status.HTTP_201_CREATED,
    response_model=StockAdjusted,
    summary="Add or remove available units (Idempotency-Key required)",
)
async def adjust_stock(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    body: StockAdjustment,
    principal: PrincipalDep,
    session: SessionDep,
    _: StockMoving,
) -> StockAdjusted:
    """Positive: the lot must hold the extra units (409 `mass_balance`). Negative: at most
    what is available (409 `insufficient_stock`). Every change is a stock movement."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="listings", write=True
    )
    listing = await service.get_listing(
        session, listing_id=listing_id, cooperative_id=organisation_id
    )
    _stock, movement = await service.adjust(
        session,
        listing=listing,
        quantity=body.quantity,
        reason=body.reason,
        reference=body.reference,
        user_id=principal.user_id,
    )
    listing = await service.get_listing(session, listing_id=listing_id)
    return StockAdjusted(
        movement=StockMovementRead.model_validate(movement), listing=await _read(session, listing)
    )


@router.get(
    "/organisations/{organisation_id}/listings/{listing_id}/stock-movements",
    tags=[TAG],
    response_model=Page[StockMovementRead],
    summary="The listing's stock ledger, oldest first",
)
async def list_movements(
    organisation_id: uuid.UUID,
    listing_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
) -> Page[StockMovementRead]:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="listings"
    )
    await service.get_listing(session, listing_id=listing_id, cooperative_id=organisation_id)
    movements, cursor = await service.list_movements(session, listing_id=listing_id, page=page)
    return Page(items=[StockMovementRead.model_validate(m) for m in movements], next_cursor=cursor)


# ---------------------------------------------------------------- public


@router.get(
    "/listings",
    tags=[TAG],
    response_model=PublicListingPage,
    summary="Active listings (no sign-in)",
)
async def list_public(
    session: SessionDep,
    page: PageDep,
    category: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_.-]{1,40}$",
            description="A product category code, e.g. dried_fruit_nuts.",
        ),
    ] = None,
    county_code: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{2,6}$",
            description="The cooperative's region: 62 (Gansu), 6204 or 620400 (Baiyin), "
            "620421 (Jingyuan).",
        ),
    ] = None,
    sale_mode: Annotated[SaleMode | None, Query()] = None,
) -> Response:
    """Listings that are active and within their validity window, newest published first."""
    items, cursor = await service.list_public(
        session, page=page, category_code=category, county_code=county_code, sale_mode=sale_mode
    )
    return _json({"items": items, "next_cursor": cursor})


@router.get(
    "/listings/{listing_id}",
    tags=[TAG],
    response_model=PublicListingRead,
    summary="An active listing (no sign-in)",
)
async def get_public(listing_id: uuid.UUID, connection: ReadConnection) -> Response:
    """404 unless the listing is active and within its window; its cooperative sees it in any
    status under /organisations/{id}/listings/{listing_id}."""
    return _json(await service.public_listing(connection, listing_id))


# The hot read, served by a plain Starlette route installed ahead of the FastAPI routes (the
# FastAPI route above stays for the OpenAPI document and answers the same). It skips
# FastAPI's dependency injection and, when the app runs its lifespan, reads on the app's
# asyncpg pool (app.state.read_pool) rather than through a SQLAlchemy connection: the same
# statement, the same document, the same problem+json errors (raised to the same handlers).
_LISTING_ID: TypeAdapter[uuid.UUID] = TypeAdapter(uuid.UUID)


async def _get_public_fast(request: Request) -> Response:
    try:
        listing_id = _LISTING_ID.validate_python(request.path_params["listing_id"])
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("path", "listing_id")} for e in exc.errors()]
        ) from None
    pool = request.app.state.read_pool
    if pool is not None:
        return _json(await service.public_listing(pool, listing_id))
    async with _autocommit_connection(request.app.state.sessionmaker.kw["bind"]) as connection:
        return _json(await service.public_listing(connection, listing_id))


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset: the reads on this pool change no session state (a search's settings
    are local to its transaction, and asyncpg rolls back a transaction left open). asyncpg's
    default reset (RESET ALL, UNLISTEN, CLOSE ALL, advisory unlock) is one more round trip per
    request."""


async def create_read_pool(url: str, size: int) -> asyncpg.Pool:
    """The asyncpg pool of the hot reads (a public listing, search), on the database of the
    app's engine."""
    return await asyncpg.create_pool(
        plain_url(url),
        min_size=1,
        max_size=size,
        reset=_keep_session,
        server_settings={"application_name": "agribridge"},
    )


def install_fast_routes(app: FastAPI) -> None:
    """Put the plain route for GET /listings/{listing_id} first, so that it wins the match."""
    route = Route("/listings/{listing_id}", _get_public_fast, methods=["GET"], name="get_public")
    route.methods = {"GET"}  # Starlette adds HEAD; the documented route answers GET only
    app.router.routes.insert(0, route)
