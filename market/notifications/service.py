"""Notifications: written in the transaction of what they report, one per organisation. The
worker then renders an e-mail per owner and staff member into the outbox (`write_emails`) and
sends the outbox through a transport (the default writes them to the log), so that an action
that tells thousands of organisations (an auction's clearing) writes only their feed rows."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from jinja2 import Environment, StrictUndefined, Template, nodes
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from market.db import among, copy_rows, new_ids, utcnow
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
    "auction_cleared": (
        "拍卖已结束 Auction cleared",
        "「{{ title }}」拍卖已结束：{{ bids }} 个出价，{{ winners }} 位买家中标"
        "{% if winners %}，成交 {{ quantity }}，货款 {{ revenue }}，买家须在 {{ due }} 前付款"
        "{% endif %}。{% if unsold %}未成交的 {{ unsold }} 不再出售。{% endif %}",
    ),
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
    "refund_bounced": (
        "退款被退回 Refund bounced",
        "订单 {{ order_ref }} 的退款 {{ amount }} 被收款银行退回（{{ reason }}），"
        "平台将核实账户后重新汇出。",
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
) -> uuid.UUID:
    """Record a notification (its e-mails follow from the worker); its id."""
    [notification_id] = await notify_many(
        session, [Draft(organisation_id, kind, subject_type, subject_id, context)]
    )
    return notification_id


class Draft(NamedTuple):
    """A notification to write with others at once (see `notify_many`): the arguments of
    `notify` (a named tuple: an auction makes one per bid)."""

    organisation_id: uuid.UUID
    kind: str
    subject_type: str
    subject_id: uuid.UUID
    context: dict[str, Any]


@dataclass(frozen=True)
class _Written:
    """What the e-mail template sees of a notification."""

    id: uuid.UUID
    organisation_id: uuid.UUID
    kind: str
    title: str
    body: str
    subject_type: str
    subject_id: uuid.UUID


_EMAIL_MANY = text("""
INSERT INTO email_outbox (notification_id, to_address, subject, body_text)
SELECT notification_id, to_address, subject, body_text
  FROM unnest(CAST(:notification_ids AS uuid[]), CAST(:to_addresses AS text[]),
              CAST(:subjects AS text[]), CAST(:bodies AS text[]))
       WITH ORDINALITY AS e(notification_id, to_address, subject, body_text, ord)
 ORDER BY ord
""")


class _Renderer:
    """Renders many contexts with one template. A template that is only text and `{{ name }}`
    or `{{ name.attribute }}` (no filters, tests or statements), in an environment that
    neither escapes nor finalises, is rendered by joining strings, as Jinja2 itself would
    render it (tens of microseconds saved each, which add up over thousands of
    notifications); any other template renders through Jinja2."""

    def __init__(self, template: Template, source: str) -> None:
        self.template = template
        self.parts = _plain_parts(template, source)

    def render(self, context: dict[str, Any]) -> str:
        parts = self.parts
        if parts is None:
            return self.template.render(context)
        pieces: list[str] = []
        for text_, name, attribute in parts:
            if name is None:
                pieces.append(text_)
            elif name not in context:
                return self.template.render(context)  # its own error for what is missing
            elif attribute is None:
                pieces.append(str(context[name]))
            else:
                pieces.append(str(getattr(context[name], attribute)))
        return "".join(pieces)


def _plain_parts(
    template: Template, source: str
) -> list[tuple[str, str | None, str | None]] | None:
    """(text, None, None) or ("", name, attribute or None) per piece of a plain template; None
    when the template is not plain."""
    environment = template.environment
    autoescape = environment.autoescape
    if callable(autoescape):
        autoescape = autoescape(template.name)
    if autoescape or environment.finalize is not None:
        return None
    parts: list[tuple[str, str | None, str | None]] = []
    for node in environment.parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append((child.data, None, None))
            elif isinstance(child, nodes.Name):
                parts.append(("", child.name, None))
            elif isinstance(child, nodes.Getattr) and isinstance(child.node, nodes.Name):
                parts.append(("", child.node.name, child.attr))
            else:
                return None
    return parts


@lru_cache(maxsize=len(MESSAGES) + 1)
def _renderers(kind: str) -> tuple[_Renderer, _Renderer]:
    title, body = _compiled(kind)
    title_source, body_source = MESSAGES[kind]
    return _Renderer(title, title_source), _Renderer(body, body_source)


@lru_cache(maxsize=1)
def _email_renderer() -> _Renderer:
    template = templates.get_template("email/notification.txt")
    loader = template.environment.loader
    assert loader is not None
    source, _, _ = loader.get_source(template.environment, "email/notification.txt")
    return _Renderer(template, source)


async def notify_many(session: AsyncSession, drafts: Sequence[Draft]) -> list[uuid.UUID]:
    """`notify` for many notifications at once, in one statement: one notification per draft,
    in the given order (their e-mails follow from the worker). Returns their ids."""
    if not drafts:
        return []
    rendered: list[tuple[str, str]] = []
    for draft in drafts:
        title_renderer, body_renderer = _renderers(draft.kind)
        rendered.append((title_renderer.render(draft.context), body_renderer.render(draft.context)))
    ids = new_ids(len(drafts))
    await copy_rows(
        session,
        "notification",
        ("id", "organisation_id", "kind", "title", "body", "subject_type", "subject_id"),
        [
            (notification_id, d.organisation_id, d.kind, title, body, d.subject_type, d.subject_id)
            for notification_id, d, (title, body) in zip(ids, drafts, rendered, strict=True)
        ],
    )
    return ids


async def write_emails(session: AsyncSession, *, limit: int = 1000) -> int:
    """Render the e-mails of notifications not yet e-mailed into the outbox: one per owner and
    staff member of the organisation at this moment (a member who left is not written to),
    the oldest notifications first, claimed with SKIP LOCKED so that workers share the work.
    Returns how many notifications were handled."""
    claimed = (
        await session.execute(
            select(
                Notification.id,
                Notification.organisation_id,
                Notification.kind,
                Notification.title,
                Notification.body,
                Notification.subject_type,
                Notification.subject_id,
            )
            .where(Notification.emailed_at.is_(None))
            .order_by(Notification.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not claimed:
        return 0
    notifications = [_Written(*row) for row in claimed]
    members = await organisations_service.members_of(
        session, (n.organisation_id for n in notifications), roles=("owner", "staff")
    )
    email = _email_renderer()
    outbox: dict[str, list[Any]] = {
        "notification_ids": [],
        "to_addresses": [],
        "subjects": [],
        "bodies": [],
    }
    for notification in notifications:
        for member in members.get(notification.organisation_id, ()):
            outbox["notification_ids"].append(notification.id)
            outbox["to_addresses"].append(member.email)
            outbox["subjects"].append(f"[农商桥] {notification.title}")
            outbox["bodies"].append(
                email.render(
                    {
                        "name": member.display_name,
                        "title": notification.title,
                        "body": notification.body,
                        "notification": notification,
                    }
                )
            )
    if outbox["notification_ids"]:
        await session.execute(_EMAIL_MANY, outbox)
    await session.execute(
        update(Notification)
        .where(Notification.id == among(n.id for n in notifications))
        .values(emailed_at=func.now())
    )
    return len(notifications)


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


MAX_EMAIL_ATTEMPTS = 10
EMAIL_RETRY_S = 30  # the first wait after a refusal; it doubles with each attempt


async def send_pending(session: AsyncSession, transport: EmailTransport, *, limit: int = 50) -> int:
    """Send the e-mails that are due (claimed with SKIP LOCKED, so workers share the work).
    One the transport refuses waits before its next attempt, twice as long each time
    (30 s, 1 min, 2 min … about 8.5 hours over MAX_EMAIL_ATTEMPTS), as a mail server's
    greylisting or rate limit asks; after the last it is given up, with an error in the log.
    Returns how many were sent."""
    now = utcnow()
    emails = list(
        await session.scalars(
            select(EmailOutbox)
            .where(
                EmailOutbox.sent_at.is_(None),
                EmailOutbox.attempts < MAX_EMAIL_ATTEMPTS,
                EmailOutbox.next_attempt_at <= now,
            )
            .order_by(EmailOutbox.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    sent = 0
    for email in emails:
        email.attempts += 1
        try:
            await transport.send(to=email.to_address, subject=email.subject, body=email.body_text)
        except Exception as exc:  # the transport's failure: keep the e-mail, note why
            email.last_error = f"{type(exc).__name__}: {exc}"[:500]
            email.next_attempt_at = now + dt.timedelta(
                seconds=EMAIL_RETRY_S * 2 ** (email.attempts - 1)
            )
            if email.attempts >= MAX_EMAIL_ATTEMPTS:
                log.error(
                    "e-mail %s to %s given up after %d attempts: %s",
                    email.id,
                    email.to_address,
                    email.attempts,
                    email.last_error,
                )
            continue
        email.sent_at = utcnow()
        sent += 1
    await session.flush()
    return sent
