"""HTTP: an organisation's notification feed, readable and markable as read."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from market.deps import PrincipalDep, SessionDep
from market.notifications import service
from market.notifications.schemas import MarkedRead, NotificationPage, NotificationRead
from market.organisations import service as organisations_service
from market.pagination import PageDep
from market.routing import MarketRoute

router = APIRouter(route_class=MarketRoute, tags=["notifications"])


@router.get(
    "/organisations/{organisation_id}/notifications",
    summary="The organisation's notifications, newest first, with the unread count",
)
async def list_notifications(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    unread: Annotated[bool, Query(description="Only unread ones.")] = False,
) -> NotificationPage:
    await organisations_service.access(
        session, principal, organisation_id, scope="organisation:read"
    )
    items, cursor = await service.list_notifications(
        session, organisation_id=organisation_id, page=page, unread_only=unread
    )
    return NotificationPage(
        items=[NotificationRead.model_validate(n) for n in items],
        next_cursor=cursor,
        unread=await service.unread_count(session, organisation_id=organisation_id),
    )


@router.post(
    "/organisations/{organisation_id}/notifications/{notification_id}/read",
    summary="Mark one notification read",
)
async def mark_read(
    organisation_id: uuid.UUID,
    notification_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> NotificationRead:
    await organisations_service.access(
        session, principal, organisation_id, scope="organisation:read", platform_may_view=False
    )
    notification = await service.mark_read(
        session,
        organisation_id=organisation_id,
        notification_id=notification_id,
        user_id=principal.user_id,
    )
    return NotificationRead.model_validate(notification)


@router.post(
    "/organisations/{organisation_id}/notifications/read-all",
    summary="Mark every notification read",
)
async def mark_all_read(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> MarkedRead:
    await organisations_service.access(
        session, principal, organisation_id, scope="organisation:read", platform_may_view=False
    )
    marked = await service.mark_all_read(
        session, organisation_id=organisation_id, user_id=principal.user_id
    )
    return MarkedRead(marked=marked)
