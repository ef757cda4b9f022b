"""Keeps the search index in step with the listings, and asks it.

Triggers write an outbox row in the transaction of every change that can alter what search
shows (migration 0006). On PostgreSQL the changing transaction indexes its own rows before it
commits (`index_own_changes`); anything else, and everything on Elasticsearch, is sent by the
worker (`drain_once`), which claims rows with FOR UPDATE SKIP LOCKED, rebuilds each listing's
document from the database as it is now, and sends it with the listing's version, so that an
older document never replaces a newer one whichever worker sends first.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from market.calendar import china_today
from market.listings import service as listings_service
from search.base import Deletion, GeoPoint, ItemFailure, ListingDocument, ListingSearch
from search.postgres import PostgresSearch

log = logging.getLogger("market.search")

BATCH = 500
# a refusal that may pass (429, 5xx, a write block while the cluster's disk is full) is retried
# with a growing delay, at most MAX_BACKOFF_S apart, for as long as a cluster incident may
# last; only then is the document parked with its reason. Other refusals park at once.
RETRY_HOURS = 24
MAX_BACKOFF_S = 300
REINDEX_TARGET = "reindex_target"

# --- documents -------------------------------------------------------------------------------


def _places(row: Mapping[str, Any]) -> tuple[str | None, str]:
    """(city, province) names of the cooperative's region: a county's parent is its city (or
    directly the province, for counties under a province); a municipality's districts have a
    city of the same name as the province, which is not shown twice."""
    level = row["region_level"]
    if level == "province":
        return None, row["county_name_zh"]
    if level == "city":
        return row["county_name_zh"], row["parent_name_zh"]
    if row["parent_level"] == "province":
        return None, row["parent_name_zh"]
    city, province = row["parent_name_zh"], row["grandparent_name_zh"] or row["parent_name_zh"]
    return (None if city == province else city), province


def document_of(row: Mapping[str, Any], today: dt.date) -> ListingDocument:
    """The search document of a publicly visible listing, from its public row."""
    public = listings_service.public_document(row, today)
    city, province = _places(row)
    return ListingDocument(
        id=public["id"],
        version=int(row["version"]),
        title_zh=public["title_zh"],
        title_en=public["title_en"],
        product_name_zh=public["product"]["name_zh"],
        regional_brand=public["product"]["regional_brand"],
        cooperative_id=public["cooperative"]["id"],
        cooperative_name_zh=public["cooperative"]["name_zh"],
        county_code=row["county_code"],
        county_name_zh=row["county_name_zh"],
        city_name_zh=city,
        province_name_zh=province,
        is_poverty_county=bool(row["is_poverty_county"]),
        category_code=public["product"]["category_code"],
        certifications=tuple(
            sorted({c["kind"] for c in public["certifications"] if c["is_valid"]})
        ),
        storage_class=public["product"]["storage_class"],
        sale_mode=public["sale_mode"],
        unit_price_fen=public["unit_price_fen"],
        quantity_available=public["quantity_available"],
        poor_share_bp=public["poor_share_bp"],
        location=GeoPoint(float(row["latitude"]), float(row["longitude"])),
        published_at=public["published_at"] or public["valid_from"],
    )


@dataclass
class Changes:
    """What the index must do for some listings: documents to write, listings to remove."""

    documents: list[ListingDocument] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)


async def changes_for(conn: AsyncConnection, listing_ids: Sequence[uuid.UUID]) -> Changes:
    """The current document of each listing that the public may see, and a deletion (at the
    listing's current version) for each one it may not (draft, paused, sold out, closed,
    outside its window, cooperative no longer verified)."""
    if not listing_ids:
        return Changes()
    today = china_today()
    rows = await listings_service.public_rows(conn, listing_ids, today)
    documents = [document_of(row, today) for row in rows]
    visible = {d.id for d in documents}
    hidden = [i for i in listing_ids if str(i) not in visible]
    deletions: list[Deletion] = []
    if hidden:
        result = await conn.execute(
            text("SELECT CAST(id AS text), version FROM listing WHERE id = ANY(:ids)"),
            {"ids": hidden},
        )
        deletions = [Deletion(listing_id, int(version)) for listing_id, version in result]
    return Changes(documents, deletions)


async def _hold(
    search: ListingSearch, conn: AsyncConnection, listing_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """The listings whose search rows this transaction may write now: on PostgreSQL those it
    could hold (see `_HOLD`), the others being changed by another transaction at this moment;
    on Elasticsearch all of them."""
    if not isinstance(search, PostgresSearch):
        return set(listing_ids)
    return set((await conn.execute(_HOLD, {"ids": list(listing_ids)})).scalars())


async def _write(
    search: ListingSearch, conn: AsyncConnection, changes: Changes, target: str | None = None
) -> list[ItemFailure]:
    """Send changes to the backend: PostgreSQL in `conn`'s transaction, Elasticsearch over
    the network (to `target` instead of the alias while a reindex builds it)."""
    if isinstance(search, PostgresSearch):
        failures = await search.index(changes.documents, connection=conn)
        return failures + await search.delete(changes.deletions, connection=conn)
    index: Any = search
    failures = await index.index(changes.documents, target=target)
    return [*failures, *await index.delete(changes.deletions, target=target)]


# --- the outbox --------------------------------------------------------------------------------

_OWN = text(
    "DELETE FROM search_outbox WHERE txid = txid_current_if_assigned() RETURNING listing_id"
)
_CLAIM = text(
    """
    SELECT id, listing_id, attempts,
           created_at <= now() - make_interval(hours => :retry_hours) AS overdue
      FROM search_outbox
     WHERE parked_at IS NULL AND available_at <= now()
     ORDER BY available_at, id
     LIMIT :batch
     FOR UPDATE SKIP LOCKED
    """
)
_DONE = text("DELETE FROM search_outbox WHERE id = ANY(:ids)")
# On PostgreSQL the worker writes the search rows in the transaction that reads the listings,
# and holds them (FOR SHARE) from before they are read until the rows commit: a transaction
# that changes one meanwhile waits, then indexes its own version after ours. Without it a
# worker that read a listing just before a request hid it wrote the old document back after
# the request's delete (Elasticsearch refuses that write by the delete's tombstone; PostgreSQL
# keeps no tombstones). A listing being changed right now is skipped (SKIP LOCKED), not waited
# for: its changer indexes it or queues it, and its outbox row comes back a second later
# (_LATER). Waiting could deadlock with a trigger that touches several listings in another
# order. A request never needs the hold: the listings in its own outbox rows are the ones it
# inserted or updated, which it holds already.
_HOLD = text("SELECT id FROM listing WHERE id = ANY(:ids) ORDER BY id FOR SHARE SKIP LOCKED")
_EXISTING = text("SELECT id FROM listing WHERE id = ANY(:ids)")
_LATER = text(
    "UPDATE search_outbox SET available_at = now() + interval '1 second' WHERE id = ANY(:ids)"
)
_REQUEUE = text(
    "INSERT INTO search_outbox (listing_id) SELECT id FROM unnest(CAST(:ids AS uuid[])) AS id "
    "ORDER BY id"
)
_RETRY = text(
    """
    UPDATE search_outbox
       SET attempts = attempts + 1, last_error = :error,
           available_at = now() + make_interval(secs => least(power(2, attempts), :max_backoff))
     WHERE id = ANY(:ids)
    """
)
_NOTE = text("UPDATE search_outbox SET last_error = :error WHERE id = ANY(:ids)")
_PARK = text(
    "UPDATE search_outbox SET attempts = attempts + 1, last_error = :error, parked_at = now() "
    "WHERE id = ANY(:ids)"
)


async def index_own_changes(session: AsyncSession, search: ListingSearch) -> int:
    """On PostgreSQL, index the listings this transaction changed, in this transaction, so
    that the search rows commit with the change. Returns how many listings it indexed."""
    if not isinstance(search, PostgresSearch):
        return 0
    conn = await session.connection()
    listing_ids = sorted(set((await conn.execute(_OWN)).scalars()))
    if listing_ids:
        await _write(search, conn, await changes_for(conn, listing_ids))
    return len(listing_ids)


@dataclass
class Drained:
    claimed: int = 0
    written: int = 0
    retried: int = 0
    parked: int = 0
    error: str | None = None


async def _state(conn: AsyncConnection, key: str) -> str | None:
    value = await conn.scalar(text("SELECT value FROM search_state WHERE key = :k"), {"k": key})
    return None if value is None else str(value)


async def _set_state(conn: AsyncConnection, key: str, value: str | None) -> None:
    if value is None:
        await conn.execute(text("DELETE FROM search_state WHERE key = :k"), {"k": key})
        return
    await conn.execute(
        text(
            "INSERT INTO search_state (key, value) VALUES (:k, :v) ON CONFLICT (key) "
            "DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
        ),
        {"k": key, "v": value},
    )


async def drain_once(
    sessionmaker: async_sessionmaker[AsyncSession], search: ListingSearch, *, batch: int = BATCH
) -> Drained:
    """Claim a batch of outbox rows, send the current state of their listings, and delete
    the rows in the same transaction. When the backend cannot be reached the rows stay
    (with the error noted) and are never parked; a document the backend refuses is retried
    with a growing delay for RETRY_HOURS if the refusal may pass, else parked with the
    reason."""
    async with sessionmaker() as session, session.begin():
        conn = await session.connection()
        rows = (await conn.execute(_CLAIM, {"batch": batch, "retry_hours": RETRY_HOURS})).all()
        if not rows:
            return Drained()
        claimed = len(rows)
        held = await _hold(search, conn, sorted({row.listing_id for row in rows}))
        if len(held) < len({row.listing_id for row in rows}):
            # a listing gone altogether (deleted by hand) is nobody's to wait for
            held |= {row.listing_id for row in rows} - set(
                (await conn.execute(_EXISTING, {"ids": [r.listing_id for r in rows]})).scalars()
            )
        busy = [row.id for row in rows if row.listing_id not in held]
        if busy:
            await conn.execute(_LATER, {"ids": busy})
            rows = [row for row in rows if row.listing_id in held]
        changes = await changes_for(conn, sorted(held))
        targets: list[str | None] = [None]
        if not isinstance(search, PostgresSearch):
            target = await _state(conn, REINDEX_TARGET)
            if target:
                targets.append(target)
        failures: dict[str, ItemFailure] = {}
        try:
            for target in targets:
                for failure in await _write(search, conn, changes, target):
                    failures.setdefault(failure.id, failure)
        except Exception as exc:  # the backend is unreachable or answered garbage
            if isinstance(search, PostgresSearch):
                raise
            # the rows stay as they are, ready the moment the backend is back; the worker
            # loop waits longer between attempts meanwhile
            error = f"{type(exc).__name__}: {exc}"[:500]
            await conn.execute(_NOTE, {"ids": [r.id for r in rows], "error": error})
            return Drained(claimed=claimed, error=error)
        done: list[int] = []
        retry: list[int] = []
        park: list[int] = []
        reasons: dict[int, str] = {}
        for row in rows:
            refused = failures.get(str(row.listing_id))
            if refused is None:
                done.append(row.id)
            elif refused.retryable and not row.overdue:
                retry.append(row.id)
                reasons[row.id] = refused.reason
            else:
                park.append(row.id)
                reasons[row.id] = refused.reason
        if done:
            await conn.execute(_DONE, {"ids": done})
        for ids, statement in ((retry, _RETRY), (park, _PARK)):
            for row_id in ids:
                await conn.execute(
                    statement,
                    {"ids": [row_id], "error": reasons[row_id][:500], "max_backoff": MAX_BACKOFF_S},
                )
        if park:
            log.warning("search refused %d documents; parked", len(park))
        written = len(changes.documents) + len(changes.deletions) - len(failures)
        return Drained(claimed, written, len(retry), len(park))


async def drain(
    sessionmaker: async_sessionmaker[AsyncSession], search: ListingSearch, *, batch: int = BATCH
) -> Drained:
    """Drain until nothing is claimable now (or the backend is unreachable)."""
    total = Drained()
    while True:
        step = await drain_once(sessionmaker, search, batch=batch)
        total.claimed += step.claimed
        total.written += step.written
        total.retried += step.retried
        total.parked += step.parked
        if step.error:
            total.error = step.error
            return total
        if step.claimed < batch:
            return total


@dataclass
class Backlog:
    pending: int
    parked: int
    oldest_seconds: float | None


async def backlog(conn: AsyncConnection) -> Backlog:
    row = (
        await conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE parked_at IS NULL), "
                "count(*) FILTER (WHERE parked_at IS NOT NULL), "
                "extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL)) "
                "FROM search_outbox"
            )
        )
    ).one()
    return Backlog(int(row[0]), int(row[1]), None if row[2] is None else float(row[2]))


async def parked(conn: AsyncConnection, limit: int = 100) -> list[dict[str, Any]]:
    result = await conn.execute(
        text(
            "SELECT id, CAST(listing_id AS text) AS listing_id, attempts, last_error, "
            "parked_at FROM search_outbox WHERE parked_at IS NOT NULL ORDER BY id LIMIT :n"
        ),
        {"n": limit},
    )
    return [dict(r) for r in result.mappings()]


async def retry_parked(conn: AsyncConnection) -> int:
    """Put parked rows back in the queue (after the cause was mended)."""
    result = await conn.execute(
        text(
            "UPDATE search_outbox SET parked_at = NULL, attempts = 0, available_at = now() "
            "WHERE parked_at IS NOT NULL"
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- sweeps: what changes with time, not with a write ------------------------------------------

_ENQUEUE_ALL = text(
    "INSERT INTO search_outbox (listing_id) SELECT id FROM listing WHERE status = 'active' "
    "ORDER BY id"
)


async def enqueue_all(conn: AsyncConnection) -> int:
    """Queue every active listing (after the index was found empty or recreated)."""
    result = await conn.execute(_ENQUEUE_ALL)
    return int(getattr(result, "rowcount", 0) or 0)


async def sweep(conn: AsyncConnection) -> int:
    """Queue the listings whose visibility or document changed with time since the last
    sweep: a validity window that opened or closed, or a new day in China (certificates
    expire), touching them (see `_touch`); the registry re-imported (poor shares), queueing
    every active listing. One sweeper at a time (advisory lock)."""
    locked = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext('search sweep'))"))
    if not locked:
        return 0
    now = await conn.scalar(text("SELECT statement_timestamp()"))
    registry = str(await conn.scalar(text("SELECT version FROM registry_version WHERE id = 1")))
    today = china_today().isoformat()
    last = await _state(conn, "swept_at")
    queued = 0
    if last is None:
        await _set_state(conn, "swept_at", now.isoformat())
        await _set_state(conn, "registry_version", registry)
        await _set_state(conn, "day", today)
        return 0
    since = dt.datetime.fromisoformat(last)
    queued += await _touch(
        conn,
        "(valid_from > :since AND valid_from <= :now) OR (valid_until > :since AND valid_until "
        "<= :now)",
        {"since": since, "now": now},
    )
    if await _state(conn, "registry_version") != registry:
        queued += await enqueue_all(conn)
        await _set_state(conn, "registry_version", registry)
    elif await _state(conn, "day") != today:
        queued += await _touch(conn, "cardinality(certification_ids) > 0", {})
    await _set_state(conn, "day", today)
    await _set_state(conn, "swept_at", now.isoformat())
    return queued


async def _touch(conn: AsyncConnection, condition: str, params: dict[str, Any]) -> int:
    """Touch the active listings matching `condition` (locked in id order, as every writer
    locks listings), so that their version grows and their triggers queue them: what a
    listing shows changed with time, and a document or deletion read before must not win
    over the one read now (the backends keep the higher version; with the same version a
    late, older one could replace it). Returns how many were touched."""
    result = await conn.execute(
        text(
            "UPDATE listing SET version = version WHERE id IN (SELECT id FROM listing "  # noqa: S608
            f"WHERE status = 'active' AND ({condition}) ORDER BY id FOR UPDATE)"
        ),
        params,
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def ensure_index(
    sessionmaker: async_sessionmaker[AsyncSession], search: ListingSearch
) -> bool:
    """On Elasticsearch: create the index when it is missing (first start, or deleted or
    recreated behind our back) and queue every listing for it, so that it is rebuilt rather
    than left half full. Returns whether it did."""
    if isinstance(search, PostgresSearch):
        return False
    index: Any = search
    created = bool(await index.ensure_index())
    empty = not created and await index.count() == 0
    async with sessionmaker() as session, session.begin():
        conn = await session.connection()
        if empty:
            # nothing to show, or everything already queued (the refill under way): not again.
            # A backlog smaller than what is visible (changes of the day, or a refill whose
            # queueing failed) does not stand in for a refill
            visible = await listings_service.count_public(session)
            if not visible or (await backlog(conn)).pending >= visible:
                return False
        if created or empty:
            queued = await enqueue_all(conn)
            log.warning(
                "search index was %s; queued %d listings", "missing" if created else "empty", queued
            )
            return True
    return False


# --- reindex and check ------------------------------------------------------------------------


async def _active_ids(
    sessionmaker: async_sessionmaker[AsyncSession], batch: int
) -> AsyncIterator[list[uuid.UUID]]:
    after = uuid.UUID(int=0)
    while True:
        async with sessionmaker() as session:
            ids = list(
                (
                    await session.execute(
                        text(
                            "SELECT id FROM listing WHERE status = 'active' AND id > :after "
                            "ORDER BY id LIMIT :n"
                        ),
                        {"after": after, "n": batch},
                    )
                ).scalars()
            )
        if not ids:
            return
        yield ids
        after = ids[-1]


async def count_active(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(text("SELECT count(*) FROM listing WHERE status = 'active'")) or 0
        )


@dataclass
class Reindexed:
    documents: int
    deletions: int
    failures: list[ItemFailure]
    index: str | None  # the new index (Elasticsearch)


async def reindex(
    sessionmaker: async_sessionmaker[AsyncSession],
    search: ListingSearch,
    *,
    batch: int = 1000,
    advance: Callable[[int], None] = lambda n: None,
) -> Reindexed:
    """Rebuild the index from the database, streaming `batch` listings at a time.

    Elasticsearch: a new index is filled while the alias keeps serving the old one; the
    worker writes every change to both meanwhile (the target is in `search_state`), and the
    alias moves in one atomic step at the end. PostgreSQL: every row is rewritten in place
    (a reader sees the old or the new row, never none) and rows of hidden listings go.

    One reindex at a time (a session advisory lock, released when its process dies): a second
    one would replace the first's target and the first would then clear it, so that changes
    went to the old index only. A second one raises RuntimeError and changes nothing."""
    async with sessionmaker() as lock_session:
        lock = await lock_session.connection()
        if not await lock.scalar(_TRY_REINDEX_LOCK):
            raise RuntimeError("another reindex is running; wait for it to finish")
        try:
            return await _reindex(sessionmaker, search, batch=batch, advance=advance)
        finally:
            await lock.execute(_REINDEX_UNLOCK)
            await lock_session.commit()


_TRY_REINDEX_LOCK = text("SELECT pg_try_advisory_lock(hashtext('market.search.reindex'))")
_REINDEX_UNLOCK = text("SELECT pg_advisory_unlock(hashtext('market.search.reindex'))")


async def _reindex(
    sessionmaker: async_sessionmaker[AsyncSession],
    search: ListingSearch,
    *,
    batch: int,
    advance: Callable[[int], None],
) -> Reindexed:
    target: str | None = None
    index: Any = search
    if not isinstance(search, PostgresSearch):
        await index.ensure_index()
        target = str(await index.create_index())
        async with sessionmaker() as session, session.begin():
            await _set_state(await session.connection(), REINDEX_TARGET, target)
    documents = deletions = 0
    failures: list[ItemFailure] = []
    try:
        async for ids in _active_ids(sessionmaker, batch):
            async with sessionmaker() as session, session.begin():
                conn = await session.connection()
                held = await _hold(search, conn, ids)
                if len(held) < len(ids):  # being changed now: left to the worker
                    await conn.execute(_REQUEUE, {"ids": [i for i in ids if i not in held]})
                changes = await changes_for(conn, sorted(held))
                failures += await _write(search, conn, changes, target)
            documents += len(changes.documents)
            deletions += len(changes.deletions)
            advance(len(ids))
        if isinstance(search, PostgresSearch):
            async with sessionmaker() as session, session.begin():
                result = await session.execute(
                    text(
                        "DELETE FROM search_listing s WHERE NOT EXISTS (SELECT 1 FROM listing l "
                        "WHERE CAST(l.id AS text) = s.id AND l.status = 'active')"
                    )
                )
                deletions += int(getattr(result, "rowcount", 0) or 0)
        elif failures:
            raise RuntimeError(
                f"{len(failures)} documents were refused (first: {failures[0].reason}); "
                "the alias still points at the old index"
            )
        else:
            await index.refresh(target=target)
            await index.switch_alias(target)
    finally:
        if target is not None:
            async with sessionmaker() as session, session.begin():
                await _set_state(await session.connection(), REINDEX_TARGET, None)
    return Reindexed(documents, deletions, failures, target)


@dataclass
class Checked:
    database: int  # publicly visible listings
    index: int  # documents in the index
    pending: int  # outbox rows still to send
    parked: int
    sampled: int
    stale: list[tuple[str, int, int | None]]  # (listing, database version, index version)

    @property
    def in_step(self) -> bool:
        return self.database == self.index and not self.stale


async def check(
    sessionmaker: async_sessionmaker[AsyncSession], search: ListingSearch, *, sample: int = 1000
) -> Checked:
    """Compare the index with the database: document counts, and the versions of a random
    sample of visible listings (a listing still waiting in the outbox is not stale)."""
    index: Any = search
    async with sessionmaker() as session:
        database = await listings_service.count_public(session)
        sampled = await listings_service.sample_public_versions(session, sample)
        conn = await session.connection()
        queued = set(
            (
                await conn.execute(
                    text(
                        "SELECT DISTINCT CAST(listing_id AS text) FROM search_outbox "
                        "WHERE listing_id = ANY(:ids)"
                    ),
                    {"ids": [uuid.UUID(i) for i, _ in sampled]},
                )
            ).scalars()
        )
        queue = await backlog(conn)
    rows = [(i, v) for i, v in sampled if i not in queued]
    indexed = await index.versions([r[0] for r in rows])
    stale = [
        (listing_id, int(version), indexed.get(listing_id))
        for listing_id, version in rows
        if indexed.get(listing_id) != version
    ]
    return Checked(
        database, int(await index.count()), queue.pending, queue.parked, len(rows), stale
    )
