"""The notification feed of an organisation and the outbox of e-mails about it."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

KINDS = (
    "order_placed",
    "order_paid",
    "order_expired",
    "order_cancelled",
    "order_shipped",
    "order_delivered",
    "new_bid",
    "bid_countered",
    "bid_accepted",
    "bid_rejected",
    "bid_expired",
    "auction_won",
    "auction_lost",
    "dispute_opened",
    "dispute_answered",
    "dispute_decided",
    "part_declined",
    "payment_failed",
    "refund_paid",
    "settled",
    "payout_scheduled",
    "auction_cleared",
    "refund_bounced",
)


class Notification(IdMixin, Base):
    """One event an organisation should know about, with what it is about. `created_at` is
    the clock time, so that two notifications of one transaction keep their order."""

    __tablename__ = "notification"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS!r}", name="kind"),
        Index("ix_notification_organisation_created", "organisation_id", "created_at", "id"),
        Index(
            "ix_notification_unread",
            "organisation_id",
            postgresql_where=text("read_at IS NULL"),
        ),
        Index(
            "ix_notification_unemailed",
            "created_at",
            postgresql_where=text("emailed_at IS NULL"),
        ),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    subject_type: Mapped[str] = mapped_column(String(20), doc="order, fulfilment, bid, …")
    subject_id: Mapped[uuid.UUID]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("clock_timestamp()"))
    read_at: Mapped[dt.datetime | None]
    read_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    emailed_at: Mapped[dt.datetime | None] = mapped_column(
        doc="when the worker rendered its e-mails into the outbox (None: still to do)"
    )


class EmailOutbox(IdMixin, CreatedAtMixin, Base):
    """An e-mail rendered by the worker from a notification, to one member of its
    organisation, then sent through the configured transport (the default writes it to the
    log)."""

    __tablename__ = "email_outbox"
    __table_args__ = (
        Index("ix_email_outbox_due", "next_attempt_at", postgresql_where=text("sent_at IS NULL")),
    )

    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notification.id", ondelete="CASCADE")
    )
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(
        server_default=text("now()"), doc="Not tried again before then (after a refusal)."
    )
