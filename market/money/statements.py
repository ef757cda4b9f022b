"""Bank statement import and the review queue of offline (bank transfer) payments.

A statement is read as a stream and written in batches; each credit line is keyed by the
bank's transaction id, so a re-import changes nothing. A line quoting a payment's reference
code is money received for that payment: matched (exactly what was due), underpaid (the buyer
may top up, or a platform user confirms the shortfall), overpaid (the excess is refunded);
a line without a known code is unmatched. Everything but an exact match waits in the review
queue, and every manual decision records who made it and why."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from market.db import new_id, utcnow
from market.errors import Conflict, Invalid, NotFound
from market.money import ledger
from market.money import service as money_service
from market.money.ledger import Leg
from market.money.models import Payment, StatementImport, StatementLine
from market.pagination import PageParams, paginate
from payments.offline import StatementError, find_reference, is_valid_reference, read_statement
from payments.offline import StatementLine as ReadLine

BATCH = 1000
MAX_REPORTED_ERRORS = 20


_COLUMNS = {
    "id": "uuid",
    "import_id": "uuid",
    "line_number": "int",
    "transaction_id": "text",
    "booked_on": "date",
    "amount_fen": "bigint",
    "currency": "text",
    "memo": "text",
    "payer_name": "text",
    "payer_account": "text",
    "payer_bank": "text",
    "reference_code": "text",
    "payment_id": "uuid",
    "outcome": "text",
    "review": "text",
}
# one statement per batch, whatever mix of empty columns the lines have (an ORM bulk insert
# splits a batch wherever the set of NULL columns changes)
_INSERT_LINES = text(  # built from the constant column list above, never from input
    f"INSERT INTO statement_line ({', '.join(_COLUMNS)}) SELECT * FROM unnest("  # noqa: S608
    + ", ".join(f"CAST(:{column} AS {kind}[])" for column, kind in _COLUMNS.items())
    + ")"
)


@dataclass
class _Match:
    outcome: str
    review: str
    payment: Payment | None


async def import_statement(
    session: AsyncSession,
    *,
    lines: Iterable[str],
    filename: str,
    user_id: uuid.UUID | None,
    progress: Callable[[int], None] | None = None,
) -> StatementImport:
    """Import a statement in one transaction (a bad line anywhere: 422 naming every bad line
    and column, nothing written). Imports are serialised, so two at once never both apply
    the same line. `progress` is told how many lines each batch held."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('agribridge.statement_import'))")
    )
    record = StatementImport(id=new_id(), filename=filename[:200], imported_by_id=user_id)
    session.add(record)
    await session.flush()
    counts = {
        "line_count": 0,
        "new_count": 0,
        "matched": 0,
        "underpaid": 0,
        "overpaid": 0,
        "unmatched": 0,
    }
    errors: list[StatementError] = []
    batch: list[ReadLine] = []
    for item in read_statement(lines):
        if isinstance(item, StatementError):
            errors.append(item)
            continue
        counts["line_count"] += 1
        if errors:
            continue  # only reading on, to report every bad line at once
        batch.append(item)
        if len(batch) >= BATCH:
            await _import_batch(session, record, batch, counts)
            if progress is not None:
                progress(len(batch))
            batch = []
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        raise Invalid(
            f"The statement has {len(errors)} unreadable line(s); nothing was imported."
            + (f" The first {len(shown)} are listed." if more else ""),
            code="bad_statement",
            errors=[
                {
                    "field": f"line {e.line_number}" + (f": {e.column}" if e.column else ""),
                    "message": e.message,
                }
                for e in shown
            ],
        )
    if batch:
        await _import_batch(session, record, batch, counts)
        if progress is not None:
            progress(len(batch))
    for key, value in counts.items():
        setattr(record, key, value)
    await session.flush()
    return record


async def _import_batch(
    session: AsyncSession, record: StatementImport, batch: list[ReadLine], counts: dict[str, int]
) -> None:
    known: dict[str, tuple[int, dt.date, str]] = {
        transaction_id: (amount, booked_on, currency)
        for transaction_id, amount, booked_on, currency in await session.execute(
            select(
                StatementLine.transaction_id,
                StatementLine.amount_fen,
                StatementLine.booked_on,
                StatementLine.currency,
            ).where(StatementLine.transaction_id.in_([line.transaction_id for line in batch]))
        )
    }
    fresh: list[ReadLine] = []
    disagreeing: list[ReadLine] = []
    for line in batch:  # a transaction id twice (in one file or two) counts once...
        content = (line.amount, line.booked_on, line.currency)
        before = known.setdefault(line.transaction_id, content)
        if before is content:
            fresh.append(line)
        elif before != content:  # ...unless the bank says two things about it
            disagreeing.append(line)
    if disagreeing:
        shown = disagreeing[:MAX_REPORTED_ERRORS]
        raise Invalid(
            f"{len(disagreeing)} line(s) carry a transaction id already seen with another "
            "amount, date or currency; nothing was imported. Check with the bank which is right.",
            code="bad_statement",
            errors=[
                {
                    "field": f"line {line.line_number}",
                    "message": f"transaction {line.transaction_id} was seen before as "
                    f"{known[line.transaction_id][0] / 100:.2f} on {known[line.transaction_id][1]}",
                }
                for line in shown
            ],
        )
    if not fresh:
        return
    codes = sorted({line.reference_code for line in fresh if line.reference_code})
    payments = {
        p.reference_code: p
        for p in await session.scalars(
            select(Payment)
            .where(Payment.reference_code.in_(codes), Payment.provider == "offline")
            .order_by(Payment.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    rows = []
    applied: list[tuple[uuid.UUID, ReadLine, Payment]] = []
    for line in fresh:
        line_id = new_id()
        payment = payments.get(line.reference_code) if line.reference_code else None
        if payment is not None and payment.currency != line.currency:
            payment = None
        match = _classify(payment, line.amount)
        if payment is not None:
            payment.captured_fen += line.amount  # applied below, in file order
            applied.append((line_id, line, payment))
        counts[match.outcome] += 1
        rows.append(
            {
                "id": line_id,
                "import_id": record.id,
                "line_number": line.line_number,
                "transaction_id": line.transaction_id,
                "booked_on": line.booked_on,
                "amount_fen": line.amount,
                "currency": line.currency,
                "memo": line.memo,
                "payer_name": line.payer_name,
                "payer_account": line.payer_account,
                "payer_bank": line.payer_bank,
                "reference_code": line.reference_code,
                "payment_id": payment.id if payment is not None else None,
                "outcome": match.outcome,
                "review": match.review,
            }
        )
    counts["new_count"] += len(rows)
    await session.execute(
        _INSERT_LINES, {column: [row[column] for row in rows] for column in _COLUMNS}
    )
    for line_id, line, payment in applied:
        await _receive(session, payment, line_id, line.amount, line.transaction_id)


def _classify(payment: Payment | None, amount: int) -> _Match:
    """The outcome of `amount` arriving for `payment`, given what it had received before."""
    if payment is None:
        return _Match("unmatched", "open", None)
    received = payment.captured_fen + amount
    if payment.status in ("succeeded", "cancelled"):
        return _Match("overpaid", "open", payment)  # paid already, or for a closed order
    if received == payment.amount_fen:
        return _Match("matched", "none", payment)
    if received < payment.amount_fen:
        return _Match("underpaid", "open", payment)
    return _Match("overpaid", "open", payment)


async def _receive(
    session: AsyncSession, payment: Payment, line_id: uuid.UUID, amount: int, bank_id: str
) -> None:
    """Post the money and move the payment (its captured total already counts this line):
    paid in full → succeeded and the order paid; the excess is refunded by the worker."""
    await money_service.record_receipt(
        session, payment, amount, key=f"receipt:{line_id}", memo=f"bank transfer {bank_id}"
    )
    if payment.status == "pending" and payment.captured_fen >= payment.amount_fen:
        payment.status = "succeeded"
        payment.captured_at = utcnow()
        if payment.captured_fen > amount:  # earlier transfers fell short: their reviews close
            await _close_reviews(session, payment, "paid in full by a later transfer", None)
    payment.updated_at = utcnow()
    await session.flush()
    await money_service.order_follows(session, payment)


async def _close_reviews(
    session: AsyncSession, payment: Payment, why: str, user_id: uuid.UUID | None
) -> None:
    """Underpaid lines of a payment that is now paid need no review any more."""
    await session.execute(
        update(StatementLine)
        .where(
            StatementLine.payment_id == payment.id,
            StatementLine.review == "open",
            StatementLine.outcome == "underpaid",
        )
        .values(review="resolved", resolution=why, resolved_by_id=user_id, resolved_at=utcnow())
    )


# ---------------------------------------------------------------- the review queue


async def list_lines(
    session: AsyncSession,
    *,
    page: PageParams,
    review: str | None = None,
    outcome: str | None = None,
) -> tuple[list[StatementLine], str | None]:
    stmt = select(StatementLine)
    if review is not None:
        stmt = stmt.where(StatementLine.review == review)
    if outcome is not None:
        stmt = stmt.where(StatementLine.outcome == outcome)
    return await paginate(
        session, stmt, page, [StatementLine.booked_on, StatementLine.id], descending=True
    )


async def get_line(
    session: AsyncSession, *, line_id: uuid.UUID, lock: bool = False
) -> StatementLine:
    stmt = select(StatementLine).where(StatementLine.id == line_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    line = await session.scalar(stmt)
    if line is None:
        raise NotFound("No such statement line.")
    return line


async def resolve_line(
    session: AsyncSession,
    *,
    line_id: uuid.UUID,
    action: str,
    note: str,
    user_id: uuid.UUID | None,
    reference_code: str | None = None,
) -> StatementLine:
    """A platform user decides on a line in review, recorded with who and why:
    `assign` an unmatched line to the payment whose reference the buyer forgot to quote;
    `confirm` an underpaid payment as paid (the platform absorbs the shortfall, e.g. bank
    charges); `dismiss` (e.g. the excess was returned, or the money was not for us)."""
    line = await get_line(session, line_id=line_id, lock=True)
    if line.review != "open":
        raise Conflict(
            "This line is not waiting for review.", code="not_in_review", current_status=line.review
        )
    if action == "assign":
        if line.outcome != "unmatched":
            raise Conflict(
                "Only unmatched lines can be assigned to a payment.",
                code="invalid_transition",
                current_status=line.outcome,
            )
        code = find_reference(reference_code or "")
        if code is None or not is_valid_reference(code):
            raise Invalid.field("reference_code", "Give the payment's reference code (e.g. NSQ…).")
        payment = await session.scalar(
            select(Payment)
            .where(Payment.reference_code == code, Payment.provider == "offline")
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if payment is None or payment.currency != line.currency:
            raise Invalid.field(
                "reference_code", f"No bank-transfer payment has the reference {code}."
            )
        match = _classify(payment, line.amount_fen)
        payment.captured_fen += line.amount_fen
        line.payment_id = payment.id
        line.reference_code = code
        line.outcome = match.outcome
        line.review = match.review
        await session.flush()
        await _receive(session, payment, line.id, line.amount_fen, line.transaction_id)
        line.resolution = f"assign: {note}"
        line.resolved_by_id = user_id
        if match.review == "open":  # still under- or overpaid: it stays for a decision
            await session.flush()
            return line
    elif action == "confirm":
        if line.outcome != "underpaid" or line.payment_id is None:
            raise Conflict(
                "Only underpaid lines can be confirmed as paid.",
                code="invalid_transition",
                current_status=line.outcome,
            )
        payment = await money_service.get_payment(session, payment_id=line.payment_id, lock=True)
        if payment.status != "pending":
            raise Conflict(
                "This payment is no longer waiting for money.",
                code="invalid_transition",
                current_status=payment.status,
            )
        shortfall = payment.amount_fen - payment.captured_fen
        adjustments = await ledger.account(
            session, "platform_adjustments", currency=payment.currency
        )
        escrow = await ledger.account(session, "buyer_escrow", currency=payment.currency)
        await ledger.post(
            session,
            kind="shortfall_accepted",
            dedupe_key=f"shortfall:{payment.id}",
            memo=f"shortfall of {shortfall} accepted: {note}",
            legs=[Leg(adjustments, shortfall), Leg(escrow, -shortfall)],
            order_id=payment.order_id,
            payment_id=payment.id,
        )
        payment.status = "succeeded"
        payment.captured_at = utcnow()
        payment.confirmed_by_id = user_id
        payment.confirmation_note = note
        payment.updated_at = utcnow()
        await _close_reviews(session, payment, f"confirmed as paid: {note}", user_id)
        await session.flush()
        await money_service.order_follows(session, payment)
        await session.refresh(line)
    elif action != "dismiss":
        raise Invalid.field("action", "One of: assign, confirm, dismiss.")
    line.review = "resolved"
    line.resolution = f"{action}: {note}"
    line.resolved_by_id = user_id
    line.resolved_at = utcnow()
    await session.flush()
    return line


async def get_import(session: AsyncSession, *, import_id: uuid.UUID) -> StatementImport:
    record = await session.get(StatementImport, import_id)
    if record is None:
        raise NotFound("No such statement import.")
    return record
