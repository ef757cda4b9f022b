"""Search in the application's own PostgreSQL database (the embedded default).

One row per publicly visible listing in `search_listing`: a tsvector of the shared analysis
(`search.analysis.index_terms`, weighted A for titles, B for the product and regional brand, C
for the cooperative, D for the place names) with a GIN index, and the filter and sort columns;
the document as JSON beside it in `search_document`. `search_vocabulary` holds the ASCII terms
(pinyin, English) with a trigram index, from which typed Latin words are corrected
(`AnalysedQuery.with_typos`).

Writes go into the caller's transaction when given a connection, so that a listing and its
search row change together. Relevance ranks only the newest RANK_WINDOW matches of the
filtered set, and counts and facets stop at COUNT_LIMIT matches (`Result.total_exact` is then
false), so that a common word never ranks or counts hundreds of thousands of rows. Sorted by
relevance, one statement reads the newest matches once (the published_at index backwards for a
common word, the GIN index for a rare one) and takes the page, the count and the facets from
them; other sorts count and facet the first matches found in a second statement.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from search.analysis import (
    AnalysedQuery,
    analyse_query,
    index_terms,
    max_edits,
    region_short_name,
    trigram_threshold,
    typo_candidates,
)
from search.base import (
    MAX_LIMIT,
    PRICE_BUCKETS,
    WEIGHT_BOOSTS,
    Deletion,
    FacetCount,
    GeoPoint,
    Health,
    Hit,
    ItemFailure,
    ListingDocument,
    Query,
    Result,
)

# the same convention as market's models (search never imports market)
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

search_listing = Table(
    "search_listing",
    metadata,
    Column("id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("terms", TSVECTOR, nullable=False),
    Column("title_zh", Text, nullable=False),
    Column("category_code", Text, nullable=False),
    Column("province_code", Text, nullable=False),
    Column("city_code", Text, nullable=False),
    Column("county_code", Text, nullable=False),
    Column("is_poverty_county", Boolean, nullable=False),
    Column("certifications", ARRAY(Text), nullable=False),
    Column("storage_class", Text, nullable=False),
    Column("sale_mode", Text, nullable=False),
    Column("unit_price_fen", BigInteger, nullable=False),
    Column("quantity_available", BigInteger, nullable=False),
    Column("poor_share_bp", Integer, nullable=True),
    Column("latitude", Double, nullable=False),
    Column("longitude", Double, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("id"),
    Index(None, "terms", postgresql_using="gin"),
    Index(None, "certifications", postgresql_using="gin"),
    Index(None, "published_at"),
    Index(None, "unit_price_fen"),
    Index(None, "poor_share_bp"),
    Index(None, "category_code"),
    Index(None, "province_code"),
    Index(None, "city_code"),
    Index(None, "county_code"),
)

# The document that a hit shows, apart from the searched row: with it inline the rows outgrew
# PostgreSQL's 2 kB page-slice limit and `terms` went to TOAST, so every match and every rank
# fetched it from there (several times slower); only the page's hits read this table.
search_document = Table(
    "search_document",
    metadata,
    Column("id", Text, nullable=False),
    Column("document", JSONB, nullable=False),
    PrimaryKeyConstraint("id"),
    ForeignKeyConstraint(["id"], ["search_listing.id"], ondelete="CASCADE"),
)

search_vocabulary = Table(
    "search_vocabulary",
    metadata,
    Column("term", Text, nullable=False),
    PrimaryKeyConstraint("term"),
    Index(None, "term", postgresql_using="gin", postgresql_ops={"term": "gin_trgm_ops"}),
)

# Relevance ranks at most this many matches (the newest) of the filtered set. What a common
# word costs grows with it, not with the listings: the newest rows are read until this many
# match (for a word in a fifth of the listings, five rows per match, each tested with `@@`),
# and each is scored (`_score`: a `@@` per query word and weight). At 500, a page of 20 can be
# followed for 25 pages.
RANK_WINDOW = 500
# Beyond this many matches the total says "at least" and facets count this many of them (as
# Elasticsearch's track_total_hits does for the total): an exact count of a common word visits
# every match. Sorted by relevance these are the newest matches, the ranked window itself, read
# in the same pass; so no second pass. (It was 10,000: counting 10,001 matches of a word in a
# fifth of the listings took 150 ms in the sequential scan planned for it, and the GIN index
# reads every match first, 105 ms for its bitmap alone at 1,000,000 listings.)
COUNT_LIMIT = RANK_WINDOW
# The newest matches are planned as if this many were wanted, though reading stops at the
# window: the published_at index (read backwards, testing each row) is then taken only for a
# word the planner expects often enough, and the GIN index (every match, sorted) otherwise. Its
# estimates of a tsquery can be several times too high (`靖远 红枣`: 24,199 of a million
# listings, 2,880 in fact): planned for 501 matches, the index scan read 185,000 rows (1.5 s)
# to find them; planned for 4,000, the GIN index finds the 2,880 (24 ms).
PLAN_WINDOW = 4_000
EARTH_RADIUS_KM = 6371.0088  # the mean radius, as Elasticsearch's arc distance uses
_ASCII_TERM = re.compile(r"[a-z0-9]+")
_HAN = re.compile(r"[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_MAX_POSITION = 16383

# The SQL of a search is composed from constant fragments, column names and the values of
# the query written as SQL constants (`_literal`: numbers checked finite, text dollar-quoted):
# a search binds no parameter, so PostgreSQL plans each statement for the values it has. (A
# prepared statement with bound values run a sixth time may get a generic plan, which guesses
# what the values select: for a common word it read every match and sorted them all on disk,
# and for province + price range + certification it intersected the whole price range with the
# whole certification, 1.2 s at 1,000,000 listings for a page planned in 1 ms.) Hence the S608
# exemptions.


def _literal(value: Any) -> str:
    """A value of a query as an SQL constant: integers and finite floats as numbers (in
    parentheses, so that a negative one never meets a minus sign as `--`), text dollar-quoted,
    times as timestamptz; anything else is refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"({value})"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return f"({value!r})"
    if isinstance(value, str):
        return sql_constant(value)
    if isinstance(value, dt.datetime):
        return f"CAST({sql_constant(value.isoformat())} AS timestamptz)"
    raise TypeError(f"no SQL constant for {type(value).__name__}")


def _distance(near: GeoPoint) -> str:
    """Kilometres from `near` along the great circle (haversine), as Elasticsearch's arc."""
    lat, lon = _literal(float(near.latitude)), _literal(float(near.longitude))
    return (
        f"(2 * {EARTH_RADIUS_KM} * asin(least(1.0, sqrt("
        f"power(sin(radians(latitude - {lat}) / 2), 2)"
        f" + cos(radians({lat})) * cos(radians(latitude))"
        f" * power(sin(radians(longitude - {lon}) / 2), 2)))))"
    )


# what the facets count besides the price, which every page reads anyway
_FACET_COLUMNS = "category_code, province_code, certifications, storage_class"
_PRICE_BUCKET = (
    "CASE "
    + " ".join(
        f"WHEN unit_price_fen >= {low}"
        + (f" AND unit_price_fen < {high}" if high is not None else "")
        + f" THEN '{low}-{high if high is not None else ''}'"
        for low, high in PRICE_BUCKETS
    )
    + " END"
)


def sql_constant(value: str) -> str:
    """`value` as a dollar-quoted SQL string constant, with a tag that does not occur in it
    (a dollar-quoted string has no escapes: it ends at the first `$tag$`)."""
    number = 0
    while f"$q{number}" in value:
        number += 1
    return f"$q{number}${value}$q{number}$"


def _tsquery(analysed: AnalysedQuery) -> str:
    """The analysed query as a constant of the statement, not a parameter: a prepared statement
    run more than five times may otherwise get PostgreSQL's generic plan, which assumes a
    parameter's tsquery matches 0.5% of the rows. For a common word that plan reads every
    match, sorts them all with their tsvectors (on disk) and ranks the newest: several times
    slower than the plan for the actual query (the newest rows first, stopping at the window)."""
    return f"CAST({sql_constant(analysed.tsquery())} AS tsquery)"


def _score(analysed: AnalysedQuery, column: str) -> str:
    """The listing's relevance as both backends compute it (WEIGHT_BOOSTS): per group, the
    boost of each weight at which the tsvector holds one of the group's terms, added up."""
    if analysed.empty:
        return "CAST(0 AS double precision)"
    parts: list[str] = []
    for group in analysed.groups:
        for weight, boost in WEIGHT_BOOSTS.items():
            alternatives = " | ".join(f"{_quote(term)}:{weight}" for term in group.terms)
            parts.append(
                f"CASE WHEN {column} @@ CAST({sql_constant(alternatives)} AS tsquery) "
                f"THEN {boost} ELSE 0 END"
            )
    return f"CAST({' + '.join(parts)} AS double precision)"


def _facet_counts(source: str, limit: int) -> str:
    """A jsonb array of [category, province, storage class, certifications, price bucket, n]
    over the rows of `source` numbered (`n`) up to `limit`: one grouping in one pass, folded into
    the facets by `_facets`."""
    return (
        "(SELECT jsonb_agg(jsonb_build_array(category_code, province_code, storage_class, "  # noqa: S608
        "certifications, bucket, c)) FROM (SELECT category_code, province_code, storage_class, "
        f"certifications, {_PRICE_BUCKET} AS bucket, count(*) AS c FROM {source} "
        f"WHERE n <= {int(limit)} GROUP BY 1, 2, 3, 4, 5) AS g)"
    )


def _facets(groups: Sequence[Sequence[Any]] | None) -> dict[str, list[FacetCount]]:
    counts: dict[str, dict[str, int]] = {
        name: {} for name in ("category", "province", "storage_class", "certification", "price")
    }
    for category, province, storage_class, certifications, bucket, n in groups or ():
        for facet, value in (
            ("category", category),
            ("province", province),
            ("storage_class", storage_class),
            ("price", bucket),
        ):
            counts[facet][value] = counts[facet].get(value, 0) + int(n)
        for certification in certifications:
            counts["certification"][certification] = counts["certification"].get(
                certification, 0
            ) + int(n)
    facets: dict[str, list[FacetCount]] = {}
    for facet in ("category", "province", "certification", "storage_class"):
        facets[facet] = [
            FacetCount(v, n) for v, n in sorted(counts[facet].items(), key=lambda x: (-x[1], x[0]))
        ]
    facets["price"] = [
        FacetCount(label, counts["price"].get(label, 0))
        for label in (f"{lo}-{hi if hi is not None else ''}" for lo, hi in PRICE_BUCKETS)
    ]
    return facets


# the document follows its row only when the row was written (not an older version)
_UPSERT = text(
    """
    WITH written AS (
        INSERT INTO search_listing (
            id, version, terms, title_zh, category_code, province_code, city_code,
            county_code, is_poverty_county, certifications, storage_class, sale_mode,
            unit_price_fen, quantity_available, poor_share_bp, latitude, longitude,
            published_at
        ) VALUES (
            :id, :version, CAST(CAST(:terms AS text) AS tsvector), :title_zh, :category_code,
            :province_code, :city_code, :county_code, :is_poverty_county,
            CAST(:certifications AS text[]), :storage_class, :sale_mode, :unit_price_fen,
            :quantity_available, :poor_share_bp, :latitude, :longitude, :published_at
        )
        ON CONFLICT (id) DO UPDATE SET
            version = EXCLUDED.version, terms = EXCLUDED.terms,
            title_zh = EXCLUDED.title_zh, category_code = EXCLUDED.category_code,
            province_code = EXCLUDED.province_code, city_code = EXCLUDED.city_code,
            county_code = EXCLUDED.county_code, is_poverty_county = EXCLUDED.is_poverty_county,
            certifications = EXCLUDED.certifications, storage_class = EXCLUDED.storage_class,
            sale_mode = EXCLUDED.sale_mode, unit_price_fen = EXCLUDED.unit_price_fen,
            quantity_available = EXCLUDED.quantity_available,
            poor_share_bp = EXCLUDED.poor_share_bp, latitude = EXCLUDED.latitude,
            longitude = EXCLUDED.longitude, published_at = EXCLUDED.published_at
        WHERE search_listing.version <= EXCLUDED.version
        RETURNING id
    )
    INSERT INTO search_document (id, document)
    SELECT id, CAST(CAST(:document AS text) AS jsonb) FROM written
    ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document
    """
)
# only the missing terms, in order: concurrent writers then rarely wait on each other and
# never deadlock
_VOCABULARY = text(
    """
    INSERT INTO search_vocabulary (term)
    SELECT t FROM unnest(CAST(:terms AS text[])) AS t
    WHERE NOT EXISTS (SELECT 1 FROM search_vocabulary v WHERE v.term = t)
    ORDER BY t
    ON CONFLICT (term) DO NOTHING
    """
)


# --- documents -------------------------------------------------------------------------------


def document_to_json(doc: ListingDocument) -> dict[str, Any]:
    data = dataclasses.asdict(doc)
    data["published_at"] = doc.published_at.isoformat()
    data["certifications"] = list(doc.certifications)
    return data


_DOCUMENT_FIELDS = frozenset(f.name for f in dataclasses.fields(ListingDocument))
_POINT_FIELDS = frozenset(f.name for f in dataclasses.fields(GeoPoint))


def document_from_json(data: dict[str, Any]) -> ListingDocument:
    """The document as `document_to_json` stored it. With exactly the fields it was stored
    with, its attributes are set directly rather than through the frozen dataclass's
    `__init__`, which sets each of its 22 fields through `object.__setattr__`: 14 µs a
    document, against 3, and a page of hits builds 20 of them per search. Anything else
    goes through `__init__`, which names what is missing or unknown."""
    values = dict(data)
    values["published_at"] = dt.datetime.fromisoformat(values["published_at"])
    values["certifications"] = tuple(values["certifications"])
    location = values["location"]
    if values.keys() != _DOCUMENT_FIELDS or location.keys() != _POINT_FIELDS:
        values["location"] = GeoPoint(**location)
        return ListingDocument(**values)
    point = object.__new__(GeoPoint)
    point.__dict__.update(location)
    values["location"] = point
    document = object.__new__(ListingDocument)
    document.__dict__.update(values)
    return document


def _region_text(name: str | None) -> str:
    return f"{name} {region_short_name(name)}" if name else ""


def document_terms(doc: ListingDocument) -> list[tuple[str, str]]:
    """(term, weight) for each field of the document, titles first."""
    fields = (
        ("A", [doc.title_zh, doc.title_en or ""]),
        ("B", [doc.product_name_zh, doc.regional_brand or ""]),
        ("C", [doc.cooperative_name_zh]),
        (
            "D",
            [
                _region_text(doc.county_name_zh),
                _region_text(doc.city_name_zh),
                _region_text(doc.province_name_zh),
            ],
        ),
    )
    return [(term, weight) for weight, texts in fields for term in index_terms(" ".join(texts))]


def _quote(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_text(weighted: Sequence[tuple[str, str]]) -> str:
    """A tsvector literal with a position and a weight per term (a weight rides on a
    position)."""
    return " ".join(
        f"{_quote(term)}:{min(i + 1, _MAX_POSITION)}{weight}"
        for i, (term, weight) in enumerate(weighted)
    )


def _row(doc: ListingDocument, weighted: Sequence[tuple[str, str]]) -> dict[str, Any]:
    if doc.published_at.tzinfo is None:
        raise ValueError(f"listing {doc.id}: published_at needs a time zone")
    return {
        "id": doc.id,
        "version": doc.version,
        "document": json.dumps(document_to_json(doc), ensure_ascii=False),
        "terms": tsvector_text(weighted),
        "title_zh": doc.title_zh,
        "category_code": doc.category_code,
        "province_code": doc.province_code,
        "city_code": doc.city_code,
        "county_code": doc.county_code,
        "is_poverty_county": doc.is_poverty_county,
        "certifications": list(doc.certifications),
        "storage_class": doc.storage_class,
        "sale_mode": doc.sale_mode,
        "unit_price_fen": doc.unit_price_fen,
        "quantity_available": doc.quantity_available,
        "poor_share_bp": doc.poor_share_bp,
        "latitude": doc.location.latitude,
        "longitude": doc.location.longitude,
        # to the millisecond, as Elasticsearch's `date` keeps it: listings published in the
        # same millisecond then sort by id on both backends
        "published_at": doc.published_at.replace(
            microsecond=doc.published_at.microsecond // 1000 * 1000
        ),
    }


# --- cursors and highlighting ----------------------------------------------------------------


def encode_cursor(sort: str, keys: Sequence[Any], listing_id: str) -> str:
    values = [k.isoformat() if isinstance(k, dt.datetime) else k for k in keys]
    raw = json.dumps({"s": sort, "k": values, "id": listing_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[list[Any], str]:
    """([the sort key], listing id) of a cursor of this sort; ValueError for anything else,
    including a key of the wrong type (a time for newest, a whole number for price and poor
    share, a finite number otherwise): both backends put the key into their query as it is."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if data["s"] != sort or not isinstance(data["id"], str):
            raise ValueError("cursor of another sort")
        if "\x00" in data["id"] or len(data["id"]) > 100:
            raise ValueError("not a listing id")
        keys = list(data["k"])
        if len(keys) != 1:
            raise ValueError("wrong number of keys")
        key = keys[0]
        if sort == "newest":
            key = dt.datetime.fromisoformat(key)
            if key.tzinfo is None:  # read as UTC by one backend, local time by the other
                raise ValueError("the time has no time zone")
            # in UTC: PostgreSQL refuses offsets beyond ±15:59 that Python accepts
            key = key.astimezone(dt.UTC)
        elif isinstance(key, bool) or not isinstance(key, int | float):
            raise ValueError("the key is not a number")
        elif sort in ("price_asc", "price_desc", "poor_share"):
            if not isinstance(key, int):
                raise ValueError("the key is not a whole number")
            if not -(2**63) <= key < 2**63:
                raise ValueError("the key is out of range")
        else:
            key = float(key)
            if not math.isfinite(key):
                raise ValueError("the key is not a finite number")
        return [key], data["id"]
    except (ValueError, KeyError, TypeError, OverflowError, binascii.Error) as exc:
        raise ValueError(f"invalid cursor: {exc}") from exc


def highlight(title: str, analysed: AnalysedQuery) -> str | None:
    """The title with the query's Chinese terms in <em>…</em> (None when none occurs)."""
    words = {t for g in analysed.groups for t in g.terms if _HAN.search(t)}
    marked = [False] * len(title)
    for word in words:
        start = title.find(word)
        while start >= 0:
            for i in range(start, start + len(word)):
                marked[i] = True
            start = title.find(word, start + 1)
    if not any(marked):
        return None
    out: list[str] = []
    for i, ch in enumerate(title):
        if marked[i] and (i == 0 or not marked[i - 1]):
            out.append("<em>")
        out.append(ch)
        if marked[i] and (i == len(title) - 1 or not marked[i + 1]):
            out.append("</em>")
    return "".join(out)


async def _rows(conn: Any, sql: str, *args: Any) -> Sequence[Sequence[Any]]:
    """The rows of `sql` (with $1, $2… parameters) by position, on a SQLAlchemy connection or
    an asyncpg one alike."""
    if isinstance(conn, AsyncConnection):
        return (await conn.exec_driver_sql(sql, args or None)).all()
    return list(await conn.fetch(sql, *args))


# --- the backend -----------------------------------------------------------------------------


class PostgresSearch:
    """The ListingIndex on PostgreSQL. `connection` binds every operation to one connection
    (and its transaction), as tests and request-scoped callers need; otherwise each call uses
    the engine, and searches and suggestions use `reader` when given: an asyncpg pool on the
    same database (the app's read pool), where a search is one round trip, with no
    transaction to begin and roll back around it."""

    name = "postgres"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        connection: AsyncConnection | None = None,
        reader: Any = None,
        count_limit: int = COUNT_LIMIT,
        rank_window: int = RANK_WINDOW,
    ) -> None:
        self.engine = engine
        self.connection = connection
        self.reader = reader
        self.count_limit = count_limit
        self.rank_window = rank_window

    async def health(self) -> Health:
        try:
            async with self.engine.connect() as conn:
                has_trgm = await conn.scalar(
                    text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
                )
        except Exception as exc:
            return Health(ok=False, backend=self.name, detail=f"database unreachable: {exc}")
        if not has_trgm:
            return Health(ok=False, backend=self.name, detail="extension pg_trgm is missing")
        return Health(ok=True, backend=self.name)

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def _write(self, connection: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        conn = connection or self.connection
        if conn is not None:
            yield conn
            return
        async with self.engine.begin() as own:
            yield own

    @asynccontextmanager
    async def _read(self, *, transaction: bool = False) -> AsyncIterator[Any]:
        """A connection to read on, for `_rows`: the bound one, one of the reader pool's
        (in a transaction when asked, for transaction-local settings) or the engine's."""
        if self.connection is not None:
            yield self.connection
        elif self.reader is not None:
            async with self.reader.acquire() as conn:
                if transaction:
                    async with conn.transaction(readonly=True):
                        yield conn
                else:
                    yield conn
        else:
            async with self.engine.connect() as own:
                yield own

    # --- writing

    async def index(
        self, documents: Sequence[ListingDocument], connection: AsyncConnection | None = None
    ) -> list[ItemFailure]:
        """Add or replace documents; an older version never replaces a newer one (the same
        version is rewritten: a reindex after the analysis changed). With `connection`, inside
        the caller's transaction."""
        latest: dict[str, ListingDocument] = {}
        for doc in documents:
            if doc.id not in latest or latest[doc.id].version < doc.version:
                latest[doc.id] = doc
        if not latest:
            return []
        weighted = {doc.id: document_terms(doc) for doc in latest.values()}
        rows = [_row(doc, weighted[doc.id]) for doc in latest.values()]
        vocabulary = sorted(
            {
                term
                for terms in weighted.values()
                for term, _ in terms
                if _ASCII_TERM.fullmatch(term) and not term.isdigit()
            }
        )
        async with self._write(connection) as conn:
            await conn.execute(_UPSERT, rows)
            if vocabulary:
                await conn.execute(_VOCABULARY, {"terms": vocabulary})
        return []

    async def delete(
        self, deletions: Sequence[Deletion], connection: AsyncConnection | None = None
    ) -> list[ItemFailure]:
        """Remove listings unless a newer version than the deletion's is indexed."""
        if deletions:
            async with self._write(connection) as conn:
                await conn.execute(
                    text("DELETE FROM search_listing WHERE id = :id AND version <= :version"),
                    [{"id": d.id, "version": d.version} for d in deletions],
                )
        return []

    async def count(self) -> int:
        async with self._read() as conn:
            return int(await conn.scalar(text("SELECT count(*) FROM search_listing")) or 0)

    async def versions(self, ids: Sequence[str]) -> dict[str, int]:
        """The indexed version of each of `ids` that is indexed."""
        async with self._read() as conn:
            rows = await conn.execute(
                text("SELECT id, version FROM search_listing WHERE id = ANY(:ids)"),
                {"ids": list(ids)},
            )
            return {listing_id: int(version) for listing_id, version in rows}

    # --- reading

    async def _typos(self, conn: Any, analysed: AnalysedQuery, words: list[str]) -> AnalysedQuery:
        """The query with the vocabulary's corrections of its Latin words (pg_trgm's `%` at
        the similarity below which no term within the word's typos can fall, set for the
        transaction)."""
        vocabulary: set[str] = set()
        for word in words:
            await _rows(
                conn,
                "SELECT set_config('pg_trgm.similarity_threshold', $1, true)",
                str(trigram_threshold(word)),
            )
            k = max_edits(word)  # a term of another length by more than k is never a typo
            found = await _rows(
                conn,
                "SELECT term FROM search_vocabulary WHERE term % $1 "
                "AND length(term) BETWEEN $2 AND $3",
                word,
                len(word) - k,
                len(word) + k,
            )
            terms = [row[0] for row in found]
            if word in terms and not await self._indexed(conn, word):
                # the vocabulary only grows: a word no listing holds any more (a misspelt
                # title since closed) is not known, or it would never be corrected again
                terms.remove(word)
            vocabulary.update(typo_candidates(word, terms))
        return analysed.with_typos(vocabulary)

    @staticmethod
    async def _indexed(conn: Any, term: str) -> bool:
        """Whether a listing in the index holds `term` (one probe of the GIN index)."""
        found = await _rows(
            conn,
            "SELECT EXISTS (SELECT 1 FROM search_listing WHERE terms @@ "  # noqa: S608
            f"CAST({sql_constant(_quote(term))} AS tsquery))",
        )
        return bool(found[0][0])

    @staticmethod
    def _filters(query: Query, analysed: AnalysedQuery) -> list[str]:
        where: list[str] = []
        if not analysed.empty:
            where.append(f"terms @@ {_tsquery(analysed)}")
        if query.category:
            where.append(f"category_code = {_literal(query.category)}")
        if query.region_code:
            code = query.region_code
            column = (
                "province_code"
                if code.endswith("0000")
                else "city_code"
                if code.endswith("00")
                else "county_code"
            )
            where.append(f"{column} = {_literal(code)}")
        if query.poverty_counties_only:
            where.append("is_poverty_county")
        if query.certification:
            where.append(f"certifications @> ARRAY[CAST({_literal(query.certification)} AS text)]")
        if query.storage_class:
            where.append(f"storage_class = {_literal(query.storage_class)}")
        if query.sale_mode:
            where.append(f"sale_mode = {_literal(query.sale_mode)}")
        if query.price_min_fen is not None:
            where.append(f"unit_price_fen >= {_literal(int(query.price_min_fen))}")
        if query.price_max_fen is not None:
            where.append(f"unit_price_fen <= {_literal(int(query.price_max_fen))}")
        if query.min_poor_share_bp is not None:
            where.append(f"poor_share_bp >= {_literal(int(query.min_poor_share_bp))}")
        if query.min_available is not None:
            where.append(f"quantity_available >= {_literal(int(query.min_available))}")
        if query.near is not None and query.max_distance_km is not None:
            where.append(f"{_distance(query.near)} <= {_literal(float(query.max_distance_km))}")
        return where

    async def search(self, query: Query) -> Result:
        limit = max(1, min(query.limit, MAX_LIMIT))
        analysed = analyse_query(query.text)
        words = analysed.fuzzy_words()
        sort = query.sort
        if sort == "relevance" and analysed.empty:
            sort = "newest"
        if sort == "distance" and query.near is None:
            raise ValueError("sorting by distance needs a point (near)")
        # (expression, descending) per sort key; the id breaks ties, ascending
        keys: list[tuple[str, bool]] = {
            "relevance": [("rank", True)],
            "price_asc": [("unit_price_fen", False)],
            "price_desc": [("unit_price_fen", True)],
            "newest": [("published_at", True)],
            "distance": [("distance_km", False)],
            "poor_share": [("poor_share", True)],
        }[sort]
        keyset = "true"
        if query.cursor:
            values, after_id = decode_cursor(query.cursor, sort)  # one key, of its sort's type
            keyset = f"m.id > {_literal(after_id)}"
            for i in range(len(keys) - 1, -1, -1):
                expr, desc = keys[i]
                value = _literal(values[i])
                keyset = (
                    f"(m.{expr} {'<' if desc else '>'} {value} "
                    f"OR (m.{expr} = {value} AND {keyset}))"
                )
        async with self._read(transaction=bool(words)) as conn:
            if words:
                analysed = await self._typos(conn, analysed, words)
            condition = " AND ".join(self._filters(query, analysed)) or "true"
            distance = (
                _distance(query.near)
                if query.near is not None
                else "CAST(NULL AS double precision)"
            )
            columns = (
                "id, title_zh, terms, unit_price_fen, published_at, "
                f"coalesce(poor_share_bp, -1) AS poor_share, {distance} AS distance_km"
            )
            order = ", ".join(f"m.{e} {'DESC' if d else 'ASC'}" for e, d in keys) + ", m.id ASC"
            key_columns = ", ".join(f"p.{e}" for e, _ in keys)
            outer_order = (
                ", ".join(f"p.{e} {'DESC' if d else 'ASC'}" for e, d in keys) + ", p.id ASC"
            )
            # the document and the facets as JSON text, decoded here: the same on asyncpg and
            # SQLAlchemy connections, and faster than decoding jsonb into Python objects there
            document = "CAST(s.document AS text) AS document"

            if sort == "relevance":
                # One pass over the newest matches: they are found and sorted without their
                # rows (ctid, published_at, id), then fetched one by one by ctid, ranked,
                # numbered (n) and kept without their tsvectors; the first rank_window are the
                # candidates, and the same rows give the count (one past count_limit) and the
                # facets. Reading stops after `scan` rows (the run condition on n), though the
                # statement is planned for PLAN_WINDOW. The fetch is a LATERAL subquery that
                # cannot be flattened (OFFSET 0): a join the planner could choose read a small
                # table whole into a hash join by ctid and sorted 4,000 rows on disk (85 ms for
                # a common word at 20,000 listings), and cutting to `scan` before the join made
                # it plan the search itself for 501 rows (the published_at scan for `靖远 红枣`,
                # 1 s at 1,000,000). (With a count_limit past the window, the rows beyond it
                # are ranked for nothing.)
                scan = max(self.rank_window, self.count_limit + 1)
                extra = f", {_FACET_COLUMNS}" if query.facets else ""
                window = (
                    "SELECT * FROM (SELECT *, row_number() OVER (ORDER BY k_at DESC, k_id) AS n "  # noqa: S608
                    "FROM (SELECT k_at, k_id, l.id, title_zh, unit_price_fen, l.published_at, "
                    f"coalesce(poor_share_bp, -1) AS poor_share, {distance} AS distance_km"
                    f"{extra}, {_score(analysed, 'terms')} AS rank "
                    "FROM (SELECT ctid AS k_tid, published_at AS k_at, id AS k_id "
                    f"FROM search_listing WHERE {condition} ORDER BY published_at DESC, id "
                    f"LIMIT {max(int(scan), PLAN_WINDOW)}) AS k CROSS JOIN LATERAL (SELECT * "
                    "FROM search_listing AS l WHERE l.ctid = k.k_tid OFFSET 0) AS l) AS r) AS x "
                    f"WHERE n <= {int(scan)}"
                )
                facets_sql = _facet_counts("w", self.count_limit) if query.facets else "NULL"
                sql = (
                    f"WITH w AS MATERIALIZED ({window}), "  # noqa: S608
                    f"p AS (SELECT m.* FROM w AS m WHERE m.n <= {int(self.rank_window)} "
                    f"AND {keyset} ORDER BY {order} LIMIT {limit + 1}) "
                    # the facets (hundreds of groups) in one row only, not decoded per hit
                    "SELECT t.total, CASE WHEN row_number() OVER () = 1 THEN "
                    "CAST(t.facets AS text) END AS facets, p.id, p.title_zh, p.distance_km, "
                    f"p.rank AS score, {key_columns}, {document} "
                    f"FROM (SELECT (SELECT count(*) FROM w) AS total, {facets_sql} AS facets) AS t "
                    "LEFT JOIN (p JOIN search_document AS s ON s.id = p.id) ON true "
                    f"ORDER BY {outer_order}"
                )
                found = await _rows(conn, sql)
                total = int(found[0][0])
                groups = next((row[1] for row in found if row[1] is not None), None)
                facets = _facets(orjson.loads(groups) if groups else None) if query.facets else {}
                rows = [row[2:] for row in found if row[2] is not None]
            else:
                score = _score(analysed, "p.terms")
                page_sql = (
                    f"SELECT p.id, p.title_zh, p.distance_km, {score} AS score, {key_columns}, "  # noqa: S608
                    f"{document} "
                    f"FROM (SELECT m.* FROM (SELECT {columns} FROM search_listing "
                    f"WHERE {condition}) AS m WHERE {keyset} "
                    f"ORDER BY {order} LIMIT {limit + 1}) AS p "
                    f"JOIN search_document AS s ON s.id = p.id ORDER BY {outer_order}"
                )
                rows = list(await _rows(conn, page_sql))
                total, facets = await self._count(conn, condition, query.facets, self.count_limit)
        exact = total <= self.count_limit
        total = min(total, self.count_limit)

        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = encode_cursor(sort, [last[4 + i] for i in range(len(keys))], last[0])
        hits = [
            Hit(
                id=row[0],
                score=float(row[3]),
                distance_km=float(row[2]) if row[2] is not None else None,
                highlight=highlight(row[1], analysed) if not analysed.empty else None,
                document=document_from_json(orjson.loads(row[-1])),
            )
            for row in rows
        ]
        return Result(
            hits=hits, total=total, next_cursor=next_cursor, facets=facets, total_exact=exact
        )

    @staticmethod
    async def _count(
        conn: Any, condition: str, with_facets: bool, limit: int
    ) -> tuple[int, dict[str, list[FacetCount]]]:
        """Matches up to one past `limit` and, with facets, the facets of the newest `limit`
        of them (by published_at, then id): the same matches the relevance sort counts, so the
        facets do not change with the sort or from one request to the next."""
        if not with_facets:
            count_sql = (
                "SELECT count(*) AS total FROM (SELECT 1 FROM search_listing "  # noqa: S608
                f"WHERE {condition} LIMIT {int(limit) + 1}) AS m"
            )
            return int((await _rows(conn, count_sql))[0][0]), {}
        sql = (
            "WITH f AS MATERIALIZED (SELECT *, row_number() OVER "  # noqa: S608
            "(ORDER BY published_at DESC, id) AS n FROM "
            f"(SELECT {_FACET_COLUMNS}, unit_price_fen, published_at, id FROM search_listing "
            f"WHERE {condition} ORDER BY published_at DESC, id LIMIT {int(limit) + 1}) AS o) "
            f"SELECT (SELECT count(*) FROM f) AS total, "
            f"CAST({_facet_counts('f', limit)} AS text) AS facets"
        )
        total, groups = (await _rows(conn, sql))[0]
        return int(total), _facets(orjson.loads(groups) if groups else None)

    async def suggest(self, prefix: str, limit: int = 10) -> list[str]:
        """Distinct titles, most recent first, whose title terms start with the analysed
        prefix: Chinese characters and words as typed, pinyin and English by prefix."""
        analysed = analyse_query(prefix)
        if analysed.empty:
            return []
        parts: list[str] = []
        for i, group in enumerate(analysed.groups):
            last = i == len(analysed.groups) - 1
            alternatives = [
                f"{_quote(t)}:*A" if last and _ASCII_TERM.fullmatch(t) else f"{_quote(t)}:A"
                for t in group.terms
            ]
            parts.append("(" + " | ".join(alternatives) + ")")
        tsquery = f"CAST({sql_constant(' & '.join(parts))} AS tsquery)"
        async with self._read() as conn:
            rows = await _rows(
                conn,
                f"SELECT title_zh FROM search_listing WHERE terms @@ {tsquery} "  # noqa: S608
                "GROUP BY title_zh ORDER BY max(published_at) DESC, title_zh "
                f"LIMIT {max(1, min(int(limit), MAX_LIMIT))}",
            )
            return [r[0] for r in rows]
