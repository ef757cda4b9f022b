"""Lots, appends to the sourcing ledger (purchases, reversals, amendments), the poor-household
share of each lot, and verification of the chain."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from market.calendar import china_today
from market.catalog import service as catalog_service
from market.db import new_id, utcnow
from market.errors import Conflict, Invalid, NotFound
from market.households import service as households_service
from market.organisations.models import Organisation
from market.pagination import PageParams, paginate
from market.regions import service as regions_service
from market.sourcing import ledger
from market.sourcing.models import Lot, SourcingChainHead, SourcingRecord

_TRACE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def new_trace_code(county_code: str) -> str:
    """e.g. 620421-7KQ2MX9P: the county, then 40 random bits."""
    return county_code + "-" + "".join(secrets.choice(_TRACE_ALPHABET) for _ in range(8))


MAX_RECORD_FEN = 10**15  # ten trillion yuan: far beyond any purchase, far below a bigint


def amount_fen(quantity: int, unit_price_fen: int, pricing_unit: int) -> int:
    """quantity × price ÷ pricing unit, rounded half-even to whole fen (sign kept)."""
    exact = Decimal(quantity) * Decimal(unit_price_fen) / Decimal(pricing_unit)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def share_bp(part: int, whole: int) -> int | None:
    """part / whole in basis points (1/100 of a percent), rounded half-even; None for no whole."""
    if whole <= 0:
        return None
    exact = Decimal(part) * Decimal(10_000) / Decimal(whole)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# ---------------------------------------------------------------- lots


async def open_lot(
    session: AsyncSession, *, cooperative_id: uuid.UUID, county_code: str, data: dict[str, Any]
) -> Lot:
    await catalog_service.get_product(
        session, product_id=data["product_id"], cooperative_id=cooperative_id
    )
    lot = Lot(cooperative_id=cooperative_id, trace_code=new_trace_code(county_code), **data)
    session.add(lot)
    await session.flush()
    await session.refresh(lot)
    return lot


async def get_lot(
    session: AsyncSession,
    *,
    lot_id: uuid.UUID,
    cooperative_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Lot:
    """The lot, NotFound if it is another cooperative's. `lock` serialises writers of its
    stock (appends that reduce it, listings that take from it)."""
    stmt = select(Lot).where(Lot.id == lot_id)
    if cooperative_id is not None:
        stmt = stmt.where(Lot.cooperative_id == cooperative_id)
    if lock:
        stmt = stmt.with_for_update()
    lot = await session.scalar(stmt)
    if lot is None:
        raise NotFound("No such lot in this cooperative.")
    return lot


async def get_lot_by_trace_code(session: AsyncSession, trace_code: str) -> Lot:
    lot = await session.scalar(select(Lot).where(Lot.trace_code == trace_code.upper()))
    if lot is None:
        raise NotFound(f"No lot has the trace code {trace_code}.")
    return lot


async def list_lots(
    session: AsyncSession,
    *,
    page: PageParams,
    cooperative_id: uuid.UUID | None = None,
    regions: Sequence[str] | None = None,
) -> tuple[list[Lot], str | None]:
    """Lots of one cooperative, or of the cooperatives inside `regions` (codes)."""
    stmt = select(Lot)
    if cooperative_id is not None:
        stmt = stmt.where(Lot.cooperative_id == cooperative_id)
    if regions is not None:
        inside = select(Organisation.id).where(
            Organisation.kind == "cooperative",
            regions_service.within(Organisation.region_code, regions),
        )
        stmt = stmt.where(Lot.cooperative_id.in_(inside))
    return await paginate(session, stmt, page, [Lot.created_at, Lot.id], descending=True)


async def lot_net_quantity(session: AsyncSession, lot_id: uuid.UUID) -> int:
    """What was sourced into the lot, net of reversals, in the product's base unit."""
    total = await session.scalar(
        select(func.coalesce(func.sum(SourcingRecord.quantity), 0)).where(
            SourcingRecord.lot_id == lot_id
        )
    )
    return int(total or 0)


# ---------------------------------------------------------------- shares


@dataclass(frozen=True)
class LotShare:
    """The numbers behind a lot's poor-household share, all exact integers."""

    lot_id: uuid.UUID
    quantity: int
    value_fen: int
    poor_quantity: int
    poor_value_fen: int
    households: int
    poor_households: int
    records: int

    @property
    def poor_share_bp(self) -> int | None:
        """By value: the number this system exists for. None when nothing was bought."""
        return share_bp(self.poor_value_fen, self.value_fen)

    @property
    def poor_quantity_share_bp(self) -> int | None:
        return share_bp(self.poor_quantity, self.quantity)

    @classmethod
    def empty(cls, lot_id: uuid.UUID) -> LotShare:
        return cls(lot_id, 0, 0, 0, 0, 0, 0, 0)


# One statement for many lots. A record counts as poor when its household was poor on the
# purchase date by the registry; a reversal carries its purchase's date, so it cancels exactly.
# Households count when their net quantity in the lot is positive. The periods of a household
# never overlap (an exclusion constraint), so the join finds at most one period per record; a
# join, unlike EXISTS evaluated per FILTER, lets PostgreSQL hash it (about 8x faster at 1M).
LOT_SHARES_SQL = text(
    """
    WITH rec AS (
        SELECT r.lot_id, r.household_id, r.seq, r.quantity, r.amount_fen,
               (p.household_id IS NOT NULL) AS poor
          FROM sourcing_record r
          LEFT JOIN poor_status_period p
            ON p.household_id = r.household_id
           AND p.valid_from <= r.purchase_date
           AND (p.valid_until IS NULL OR r.purchase_date <= p.valid_until)
         WHERE r.lot_id = ANY(:lot_ids)
    ), per_household AS (
        SELECT lot_id, household_id, count(*) AS records, max(seq) AS last_seq,
               sum(quantity) AS quantity, sum(amount_fen) AS value,
               coalesce(sum(quantity) FILTER (WHERE poor), 0) AS poor_quantity,
               coalesce(sum(amount_fen) FILTER (WHERE poor), 0) AS poor_value
          FROM rec
         GROUP BY lot_id, household_id
    )
    SELECT lot_id,
           max(last_seq) AS last_seq,
           sum(quantity)::bigint AS quantity,
           sum(value)::bigint AS value_fen,
           sum(poor_quantity)::bigint AS poor_quantity,
           sum(poor_value)::bigint AS poor_value_fen,
           count(*) FILTER (WHERE quantity > 0) AS households,
           count(*) FILTER (WHERE poor_quantity > 0) AS poor_households,
           sum(records)::bigint AS records
      FROM per_household
     GROUP BY lot_id
    """
)


def _share(row: Any) -> LotShare:
    return LotShare(
        lot_id=row.lot_id,
        quantity=int(row.quantity),
        value_fen=int(row.value_fen),
        poor_quantity=int(row.poor_quantity),
        poor_value_fen=int(row.poor_value_fen),
        households=int(row.households),
        poor_households=int(row.poor_households),
        records=int(row.records),
    )


async def compute_lot_shares(
    session: AsyncSession, lot_ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, LotShare], dict[uuid.UUID, int]]:
    """Compute the figures of many lots from the records and the registry in one statement;
    also each lot's last record seq. Lots without records are absent."""
    ids = list(dict.fromkeys(lot_ids))
    if not ids:
        return {}, {}
    rows = (await session.execute(LOT_SHARES_SQL, {"lot_ids": ids})).all()
    shares = {row.lot_id: _share(row) for row in rows}
    return shares, {row.lot_id: int(row.last_seq) for row in rows}


# Stored figures that still hold: the lot's last record is the one they were computed up to,
# and no poor-status period changed since (the trigger-bumped registry version is the same).
_FRESH_SHARES_SQL = text(
    """
    SELECT s.* FROM lot_share s
     WHERE s.lot_id = ANY(:lot_ids)
       AND s.registry_version = (SELECT version FROM registry_version WHERE id = 1)
       AND s.last_seq = (SELECT max(r.seq) FROM sourcing_record r WHERE r.lot_id = s.lot_id)
    """
)

_STORE_SHARES_SQL = text(
    """
    INSERT INTO lot_share (lot_id, last_seq, registry_version, quantity, value_fen,
                           poor_quantity, poor_value_fen, households, poor_households, records)
    SELECT x.lot_id, x.last_seq, CAST(:registry_version AS bigint), x.quantity, x.value_fen,
           x.poor_quantity, x.poor_value_fen, x.households, x.poor_households, x.records
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(
           lot_id uuid, last_seq bigint, quantity bigint, value_fen bigint,
           poor_quantity bigint, poor_value_fen bigint, households bigint,
           poor_households bigint, records bigint)
     ORDER BY x.lot_id
    ON CONFLICT (lot_id) DO UPDATE SET
           last_seq = EXCLUDED.last_seq, registry_version = EXCLUDED.registry_version,
           quantity = EXCLUDED.quantity, value_fen = EXCLUDED.value_fen,
           poor_quantity = EXCLUDED.poor_quantity, poor_value_fen = EXCLUDED.poor_value_fen,
           households = EXCLUDED.households, poor_households = EXCLUDED.poor_households,
           records = EXCLUDED.records, computed_at = now()
    """
)


async def lot_shares(
    session: AsyncSession, lot_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, LotShare]:
    """Share figures of many lots; lots without records get empty figures.

    Figures stored by an earlier call are used while they still hold (checked in the same
    statement against the lot's last record and the registry version); the others are
    computed from the records and stored. Stale figures are never returned: a record appended,
    or a period changed, after a computation makes its check fail, concurrency included."""
    ids = list(dict.fromkeys(lot_ids))
    out = {lot_id: LotShare.empty(lot_id) for lot_id in ids}
    if not ids:
        return out
    for row in await session.execute(_FRESH_SHARES_SQL, {"lot_ids": ids}):
        out[row.lot_id] = _share(row)
    missing = [lot_id for lot_id in ids if out[lot_id].records == 0]
    if missing:
        # the version is read before the figures: a change committed in between makes them
        # look stale (recomputed next time), never fresh
        version = await session.scalar(text("SELECT version FROM registry_version WHERE id = 1"))
        computed, last_seqs = await compute_lot_shares(session, missing)
        out.update(computed)
        if computed:
            # in lot order, so that concurrent readers storing overlapping lots lock the rows
            # in the same order and cannot deadlock
            rows = [
                {**share.__dict__, "lot_id": str(lot_id), "last_seq": last_seqs[lot_id]}
                for lot_id, share in sorted(computed.items(), key=lambda item: str(item[0]))
            ]
            await session.execute(
                _STORE_SHARES_SQL, {"rows": json.dumps(rows), "registry_version": version}
            )
    return out


async def lot_share(session: AsyncSession, lot_id: uuid.UUID) -> LotShare:
    return (await lot_shares(session, [lot_id]))[lot_id]


# ---------------------------------------------------------------- appends


async def _append(session: AsyncSession, values: dict[str, Any]) -> SourcingRecord:
    """Append one record at the end of the chain. The chain head's row lock orders appends,
    so concurrent transactions still form one linear chain."""
    head = await session.scalar(
        select(SourcingChainHead).where(SourcingChainHead.id == 1).with_for_update()
    )
    if head is None:  # pragma: no cover - created by the migration
        raise RuntimeError("the sourcing chain head row is missing")
    values = {
        **values,
        "seq": head.last_seq + 1,
        "id": new_id(),
        "recorded_at": utcnow(),
        "prev_hash": head.last_hash,
    }
    values.setdefault("reverses_seq", None)
    for optional in ("evidence_ref", "evidence_url", "reason", "recorded_by_id"):
        values.setdefault(optional, None)
    values["hash"] = ledger.chain_hash(head.last_hash, values)
    record = SourcingRecord(**values)
    session.add(record)
    head.last_seq = values["seq"]
    head.last_hash = values["hash"]
    await session.flush()
    return record


async def append_purchase(
    session: AsyncSession,
    *,
    lot: Lot,
    household_id: uuid.UUID,
    quantity: int,
    unit_price_fen: int,
    purchase_date: dt.date,
    recorded_by_id: uuid.UUID | None,
    evidence_ref: str | None = None,
    evidence_url: str | None = None,
    reason: str | None = None,
) -> SourcingRecord:
    """Record that a member household supplied `quantity` (base units) at a price per
    pricing unit (per kg, or per piece)."""
    if quantity <= 0:
        raise Invalid.field("quantity", "The quantity must be positive.")
    if purchase_date > china_today():
        raise Invalid.field("purchase_date", "The purchase date cannot be in the future.")
    product = await catalog_service.get_product(session, product_id=lot.product_id)
    await households_service.require_member(
        session, cooperative_id=lot.cooperative_id, household_id=household_id, on=purchase_date
    )
    amount = amount_fen(quantity, unit_price_fen, catalog_service.pricing_unit(product))
    if amount > MAX_RECORD_FEN:
        # the lot's totals add records up in bigints: no single purchase may come near
        raise Invalid.field(
            "quantity",
            f"This purchase would be worth {amount // 100:,} yuan, more than one record can "
            f"hold ({MAX_RECORD_FEN // 100:,}); check the quantity and the price.",
        )
    return await _append(
        session,
        {
            "lot_id": lot.id,
            "cooperative_id": lot.cooperative_id,
            "household_id": household_id,
            "kind": "purchase",
            "quantity": quantity,
            "unit_price_fen": unit_price_fen,
            "amount_fen": amount,
            "purchase_date": purchase_date,
            "evidence_ref": evidence_ref,
            "evidence_url": evidence_url,
            "reason": reason,
            "recorded_by_id": recorded_by_id,
        },
    )


async def _committed_to_listings(session: AsyncSession, lot_id: uuid.UUID) -> int:
    from market.listings import service as listings_service  # listings imports this module

    return await listings_service.committed_base_quantity(session, lot_id)


async def reverse(
    session: AsyncSession,
    *,
    lot: Lot,
    seq: int,
    reason: str,
    recorded_by_id: uuid.UUID | None,
    check_mass_balance: bool = True,
) -> SourcingRecord:
    """Cancel a purchase with a reversing record (same household, date and price; negated
    quantity and amount). Refused when the lot's stock is already listed or sold. The caller
    holds the lot's lock (get_lot(lock=True))."""
    original = await session.scalar(
        select(SourcingRecord).where(SourcingRecord.seq == seq, SourcingRecord.lot_id == lot.id)
    )
    if original is None:
        raise NotFound(f"Record {seq} is not in this lot.")
    if original.kind != "purchase":
        raise Conflict("A reversal cannot itself be reversed.", code="not_a_purchase")
    already = await session.scalar(
        select(SourcingRecord.seq).where(SourcingRecord.reverses_seq == seq)
    )
    if already is not None:
        raise Conflict(f"Record {seq} was already reversed by {already}.", code="already_reversed")
    if check_mass_balance:
        remaining = await lot_net_quantity(session, lot.id) - original.quantity
        committed = await _committed_to_listings(session, lot.id)
        if remaining < committed:
            raise Conflict(
                f"Reversing this record would leave the lot with {remaining} but {committed} "
                "is listed or sold from it; reduce the listings first.",
                code="mass_balance",
            )
    return await _append(
        session,
        {
            "lot_id": lot.id,
            "cooperative_id": lot.cooperative_id,
            "household_id": original.household_id,
            "kind": "reversal",
            "reverses_seq": original.seq,
            "quantity": -original.quantity,
            "unit_price_fen": original.unit_price_fen,
            "amount_fen": -original.amount_fen,
            "purchase_date": original.purchase_date,
            "evidence_ref": original.evidence_ref,
            "reason": reason,
            "recorded_by_id": recorded_by_id,
        },
    )


async def amend(
    session: AsyncSession,
    *,
    lot: Lot,
    seq: int,
    reason: str,
    recorded_by_id: uuid.UUID | None,
    changes: dict[str, Any],
) -> tuple[SourcingRecord, SourcingRecord]:
    """Correct a purchase: a reversal of it, then a new purchase with the corrected values."""
    original = await session.scalar(
        select(SourcingRecord).where(SourcingRecord.seq == seq, SourcingRecord.lot_id == lot.id)
    )
    if original is None:
        raise NotFound(f"Record {seq} is not in this lot.")
    corrected: dict[str, Any] = {
        "household_id": original.household_id,
        "quantity": original.quantity,
        "unit_price_fen": original.unit_price_fen,
        "purchase_date": original.purchase_date,
        "evidence_ref": original.evidence_ref,
        "evidence_url": original.evidence_url,
    } | {k: v for k, v in changes.items() if v is not None}
    # check the new figures against the lot before appending anything
    remaining = await lot_net_quantity(session, lot.id) - original.quantity + corrected["quantity"]
    committed = await _committed_to_listings(session, lot.id)
    if remaining < committed:
        raise Conflict(
            f"After this correction the lot would hold {remaining} but {committed} is listed "
            "or sold from it.",
            code="mass_balance",
        )
    reversal = await reverse(
        session,
        lot=lot,
        seq=seq,
        reason=reason,
        recorded_by_id=recorded_by_id,
        check_mass_balance=False,
    )
    replacement = await append_purchase(
        session, lot=lot, recorded_by_id=recorded_by_id, reason=reason, **corrected
    )
    return reversal, replacement


async def list_records(
    session: AsyncSession, *, lot_id: uuid.UUID, page: PageParams
) -> tuple[list[SourcingRecord], str | None]:
    stmt = select(SourcingRecord).where(SourcingRecord.lot_id == lot_id)
    return await paginate(session, stmt, page, [SourcingRecord.seq])


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class Verification:
    checked: int
    ok: bool
    first_break: ledger.Break | None
    head_seq: int


async def count_records(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(SourcingRecord)) or 0)


async def iter_records(
    session: AsyncSession, *, up_to: int | None = None, batch: int = 5000
) -> AsyncIterator[Any]:
    """Every record in chain order (up to seq `up_to`), in keyset batches: memory stays flat."""
    last = 0
    columns = [
        getattr(SourcingRecord, name) for name in (*ledger.CHAINED_FIELDS, "prev_hash", "hash")
    ]
    while True:
        rows = (
            (
                await session.execute(
                    select(*columns)
                    .where(SourcingRecord.seq > last)
                    .where(SourcingRecord.seq <= (2**62 if up_to is None else up_to))
                    .order_by(SourcingRecord.seq)
                    .limit(batch)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return
        for row in rows:
            yield row
        last = rows[-1]["seq"]


async def verify_chain(session: AsyncSession, *, progress: Any = None) -> Verification:
    """Recompute every hash in order; name the first record that does not verify.

    The head is read first and the walk stops at it: records appended meanwhile belong to a
    later check (the head and its record commit together, so none below it is missing)."""
    head = await session.scalar(select(SourcingChainHead).where(SourcingChainHead.id == 1))
    verifier = ledger.ChainVerifier()
    async for row in iter_records(session, up_to=head.last_seq if head else 0):
        verifier.feed(dict(row))
        if progress is not None:
            progress(1)
    first_break = verifier.first_break
    if first_break is None and head is not None and head.last_hash != verifier.expected_prev:
        first_break = ledger.Break(
            seq=head.last_seq,
            record_id="",
            reason="the chain head does not match the last record: records were removed",
        )
    return Verification(
        checked=verifier.checked,
        ok=first_break is None,
        first_break=first_break,
        head_seq=head.last_seq if head else 0,
    )
