"""Notifications: written in the transaction of what they report, one per organisation, with
an e-mail per owner and staff member rendered at once into the outbox; the worker sends the
e-mails through a transport (the default writes them to the log)."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any, Protocol

from jinja2 import Environment, StrictUndefined, Template
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from market.db import utcnow
from market.errors import NotFound
from market.notifications.models import EmailOutbox, Notification
from market.organisations import service as organisations_service
from market.pagination import PageParams, paginate
from market.templating import templates

log = logging.getLogger("market.email")

# title and body per kind, as Jinja2 templates over the context the caller gives
MESSAGES: dict[str, tuple[str, str]] = {
    "order_placed": (
        "新订单待付款 New order awaiting payment",
        "{{ buyer }} 下单 {{ summary }}，待付款至 {{ due }}。",
    ),
    "order_paid": (
        "订单已付款，请备货发货 Order paid: please pack and ship",
        "{{ buyer }} 已付款：{{ summary }}。收货地：{{ destination }}。",
    ),
    "order_expired": (
        "订单未按时付款，已关闭 Order expired unpaid",
        "订单 {{ order_ref }} 未在 {{ due }} 前付款，已关闭，库存已释放。",
    ),
    "order_cancelled": (
        "订单已取消 Order cancelled",
        "{{ buyer }} 取消了订单 {{ order_ref }}：{{ reason }}。预留库存已释放。",
    ),
    "order_shipped": (
        "订单已发货 Your order has shipped",
        "{{ cooperative }} 已通过 {{ carrier }} 发货，运单号 {{ tracking_number }}"
        "{% if cold_chain %}（冷链）{% endif %}，预计 {{ transit_days }} 天到达。",
    ),
    "order_delivered": (
        "买家已确认收货 Delivery confirmed",
        "订单 {{ order_ref }} 已确认收货（{{ by }}）。",
    ),
    "new_bid": (
        "新出价 New bid",
        "{{ buyer }} 对「{{ title }}」出价 {{ price }}，数量 {{ quantity }}。",
    ),
    "bid_countered": ("卖方还价 Counter-offer", "{{ cooperative }} 对您的出价还价：{{ terms }}。"),
    "bid_accepted": (
        "出价已接受 Bid accepted",
        "「{{ title }}」：{{ terms }}。请在 {{ due }} 前付款。",
    ),
    "bid_rejected": ("出价未被接受 Bid rejected", "「{{ title }}」：{{ reason }}。"),
    "bid_expired": ("出价已过期 Bid expired", "「{{ title }}」的出价已过期。"),
    "auction_won": (
        "竞拍成功 Auction won",
        "「{{ title }}」：成交 {{ quantity }}，单价 {{ price }}。",
    ),
    "auction_lost": ("竞拍未成交 Auction lost", "「{{ title }}」：{{ reason }}。"),
    "dispute_opened": ("买家发起纠纷 Dispute opened", "订单 {{ order_ref }}：{{ reason }}。"),
    "dispute_answered": ("卖家已回复纠纷 Dispute answered", "订单 {{ order_ref }}：{{ answer }}。"),
    "dispute_decided": ("平台已裁决纠纷 Dispute decided", "订单 {{ order_ref }}：{{ decision }}。"),
    "part_declined": (
        "卖家无法供货 A cooperative declined its part",
        "{{ cooperative }} 无法供应订单 {{ order_ref }} 中的商品（{{ reason }}），"
        "该部分 {{ amount }} 不收取或将退回。",
    ),
    "payment_failed": (
        "付款未成功 Payment failed",
        "订单 {{ order_ref }} 的付款未成功：{{ reason }}。请在 {{ due }} 前重新付款。",
    ),
    "refund_paid": (
        "退款已完成 Refund paid",
        "订单 {{ order_ref }} 已退款 {{ amount }}（{{ reason }}）。",
    ),
    "settled": (
        "货款已结算 Part of an order settled",
        "订单 {{ order_ref }} 已结算：货款 {{ gross }}，服务费 {{ fee }}，应付您 {{ net }}。",
    ),
    "payout_scheduled": (
        "结算付款已安排 Payout scheduled",
        "平台将向 {{ account }} 付款 {{ amount }}（批次 {{ batch_ref }}）。",
    ),
}
_text = Environment(undefined=StrictUndefined, autoescape=False)  # noqa: S701 - plain text


@lru_cache(maxsize=len(MESSAGES))
def _compiled(kind: str) -> tuple[Template, Template]:
    title, body = MESSAGES[kind]
    return _text.from_string(title), _text.from_string(body)


def render(kind: str, context: dict[str, Any]) -> tuple[str, str]:
    title, body = _compiled(kind)
    return title.render(context), body.render(context)


def yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


async def notify(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    kind: str,
    subject_type: str,
    subject_id: uuid.UUID,
    context: dict[str, Any],
) -> Notification:
    """Record a notification and render its e-mail to each owner and staff member."""
    title, body = render(kind, context)
    notification = Notification(
        organisation_id=organisation_id,
        kind=kind,
        title=title,
        body=body,
        subject_type=subject_type,
        subject_id=subject_id,
    )
    session.add(notification)
    await session.flush()
    email = templates.get_template("email/notification.txt")
    for membership, user in await organisations_service.list_members(session, organisation_id):
        if membership.role not in ("owner", "staff"):
            continue
        session.add(
            EmailOutbox(
                notification_id=notification.id,
                to_address=user.email,
                subject=f"[农商桥] {title}",
                body_text=email.render(
                    name=user.display_name, title=title, body=body, notification=notification
                ),
            )
        )
    await session.flush()
    return notification


async def list_notifications(
    session: AsyncSession, *, organisation_id: uuid.UUID, page: PageParams, unread_only: bool
) -> tuple[list[Notification], str | None]:
    stmt = select(Notification).where(Notification.organisation_id == organisation_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return await paginate(
        session, stmt, page, [Notification.created_at, Notification.id], descending=True
    )


async def unread_count(session: AsyncSession, *, organisation_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).where(
            Notification.organisation_id == organisation_id, Notification.read_at.is_(None)
        )
    )
    return int(count or 0)


async def mark_read(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    notification_id: uuid.UUID,
    user_id: uuid.UUID | None,
) -> Notification:
    notification = await session.scalar(
        select(Notification).where(
            Notification.id == notification_id, Notification.organisation_id == organisation_id
        )
    )
    if notification is None:
        raise NotFound("No such notification.")
    if notification.read_at is None:
        notification.read_at = utcnow()
        notification.read_by_id = user_id
        await session.flush()
    return notification


async def mark_all_read(
    session: AsyncSession, *, organisation_id: uuid.UUID, user_id: uuid.UUID | None
) -> int:
    result = await session.execute(
        update(Notification)
        .where(Notification.organisation_id == organisation_id, Notification.read_at.is_(None))
        .values(read_at=utcnow(), read_by_id=user_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# ---------------------------------------------------------------- sending


class EmailTransport(Protocol):
    async def send(self, *, to: str, subject: str, body: str) -> None: ...


class LogTransport:
    """The default transport: the e-mail goes to the log (a real SMTP or API transport plugs
    in behind the same method)."""

    async def send(self, *, to: str, subject: str, body: str) -> None:
        log.info("e-mail to %s: %s\n%s", to, subject, body)


async def send_pending(session: AsyncSession, transport: EmailTransport, *, limit: int = 50) -> int:
    """Send unsent e-mails (claimed with SKIP LOCKED, so workers share the work); a failure
    is noted and retried on the next run."""
    emails = list(
        await session.scalars(
            select(EmailOutbox)
            .where(EmailOutbox.sent_at.is_(None), EmailOutbox.attempts < 10)
            .order_by(EmailOutbox.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    sent = 0
    for email in emails:
        try:
            await transport.send(to=email.to_address, subject=email.subject, body=email.body_text)
        except Exception as exc:  # the transport's failure: keep the e-mail, note why
            email.attempts += 1
            email.last_error = f"{type(exc).__name__}: {exc}"[:500]
            continue
        email.sent_at = utcnow()
        email.attempts += 1
        sent += 1
    await session.flush()
    return sent
