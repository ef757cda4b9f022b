"""Search on an Elasticsearch 8/9 cluster (or an OpenSearch-compatible server).

Listings live in concrete indices `{prefix}-listings-<utc timestamp>-<random>` behind the alias
`{prefix}-listings`; an index template gives every such index the same explicit, strict
mapping. A document carries the terms of the shared analysis (`search.postgres.document_terms`,
the very terms PostgreSQL puts in its tsvector) in one whitespace-analysed field per weight,
copied into `terms_all` for matching, plus the filter and sort fields and the whole
ListingDocument as a stored, unindexed `document` from which an index can be rebuilt.

Typed Latin and pinyin words are corrected as PostgreSQL corrects them: the distinct ASCII
terms of every indexed document go into `{prefix}-vocabulary` (one document per term), a
`fuzzy` query there fetches candidates and `search.analysis` decides (`typo_candidates`,
`AnalysedQuery.with_typos`). Like PostgreSQL's vocabulary table it only ever grows.

Versions are Elasticsearch's external versions (`external_gte`): the cluster itself refuses
an older document or deletion (a 409, which is not a failure), so concurrent writers need no
locking. A deletion leaves a tombstone for `index.gc_deletes` (60 s by default) during which
a late older document cannot bring the listing back.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from collections.abc import Sequence
from typing import Any

from elastic_transport import AiohttpHttpNode
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError

from search.analysis import ES_FUZZINESS, AnalysedQuery, analyse_query, typo_candidates
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
from search.postgres import (
    COUNT_LIMIT,
    EARTH_RADIUS_KM,
    decode_cursor,
    document_from_json,
    document_terms,
    document_to_json,
    encode_cursor,
    highlight,
)

# the versioned media types the official client sends, and the plain ones to send instead
_PLAIN = {
    "application/vnd.elasticsearch+json": "application/json",
    "application/vnd.elasticsearch+x-ndjson": "application/x-ndjson",
}


class PlainJsonNode(AiohttpHttpNode):
    """Sends plain application/json (and x-ndjson for bulk) instead of the versioned media
    types that the official client sends by default, which OpenSearch-compatible servers and
    an Elasticsearch older than the client refuse (406)."""

    async def perform_request(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: Any = None,
        headers: Any = None,
        request_timeout: Any = None,
    ) -> Any:
        if headers:
            headers = headers.copy()
            for key in list(headers.keys()):
                if key.lower() in ("accept", "content-type"):
                    for versioned, plain in _PLAIN.items():
                        if str(headers[key]).startswith(versioned):
                            headers[key] = plain
        return await super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )


def make_client(
    url: str, *, api_key: str | None = None, opensearch_compat: bool = False
) -> AsyncElasticsearch:
    kwargs: dict[str, Any] = {"request_timeout": 10, "retry_on_timeout": True, "max_retries": 2}
    if api_key:
        kwargs["api_key"] = api_key
    if opensearch_compat:
        kwargs["node_class"] = PlainJsonNode
    return AsyncElasticsearch(url, **kwargs)


# --- the index layout ------------------------------------------------------------------------

# one text field per weight of `document_terms`; relevance boosts them by WEIGHT_BOOSTS
_TERM_FIELDS = {
    "A": "terms_title",
    "B": "terms_product",
    "C": "terms_cooperative",
    "D": "terms_place",
}
_BOOSTS = {_TERM_FIELDS[weight]: boost for weight, boost in WEIGHT_BOOSTS.items()}
_MATCH_FIELD = "terms_all"

# terms only match (relevance adds field weights, see `_scoring`): no frequencies, no norms
_TERMS_FIELD = {
    "type": "text",
    "analyzer": "whitespace",
    "index_options": "docs",
    "norms": False,
    "copy_to": _MATCH_FIELD,
}
LISTING_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": {"type": "keyword"},
        **{field: dict(_TERMS_FIELD) for field in _TERM_FIELDS.values()},
        # every term of the listing, for matching
        _MATCH_FIELD: {
            "type": "text",
            "analyzer": "whitespace",
            "index_options": "docs",
            "norms": False,
        },
        "title_zh": {"type": "keyword", "fields": {"cjk": {"type": "text", "analyzer": "cjk"}}},
        "cooperative_id": {"type": "keyword"},
        "category_code": {"type": "keyword"},
        "province_code": {"type": "keyword"},
        "city_code": {"type": "keyword"},
        "county_code": {"type": "keyword"},
        "is_poverty_county": {"type": "boolean"},
        "certifications": {"type": "keyword"},
        "storage_class": {"type": "keyword"},
        "sale_mode": {"type": "keyword"},
        "unit_price_fen": {"type": "long"},
        "quantity_available": {"type": "long"},
        "poor_share_bp": {"type": "integer"},
        "published_at": {"type": "date"},
        "location": {"type": "geo_point"},
        # the whole ListingDocument (search.postgres.document_to_json), kept to rebuild from
        "document": {"type": "object", "enabled": False},
    },
}
VOCABULARY_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {"term": {"type": "keyword"}},
}
# a listings index is small; one shard keeps aggregations exact
_SETTINGS: dict[str, Any] = {"number_of_shards": 1}
_TEMPLATE_PRIORITY = 200

# candidates fetched per typed word: Lucene keeps the nearest terms when there are more
_FUZZY_EXPANSIONS = 50
_ASCII_TERM = re.compile(r"[a-z0-9]+")
# the facets that count values, with the field they count
_VALUE_FACETS = {
    "category": "category_code",
    "province": "province_code",
    "certification": "certifications",
    "storage_class": "storage_class",
}
_FACET_SIZE = 1000
_MGET_CHUNK = 1000
# per-item errors that say the index, not the document, is unavailable: sending again helps
_RETRYABLE_ERRORS = frozenset(
    {"index_not_found_exception", "index_closed_exception", "cluster_block_exception"}
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _price_label(low: int, high: int | None) -> str:
    return f"{low}-{high if high is not None else ''}"


def listing_source(
    doc: ListingDocument, weighted: Sequence[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The indexed JSON of one listing (`weighted`: its `document_terms`, if known)."""
    if doc.published_at.tzinfo is None:
        raise ValueError(f"listing {doc.id}: published_at needs a time zone")
    terms: dict[str, list[str]] = {field: [] for field in _TERM_FIELDS.values()}
    for term, weight in document_terms(doc) if weighted is None else weighted:
        terms[_TERM_FIELDS[weight]].append(term)
    return {
        "id": doc.id,
        **{field: " ".join(values) for field, values in terms.items()},
        "title_zh": doc.title_zh,
        "cooperative_id": doc.cooperative_id,
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
        "published_at": doc.published_at.isoformat(),
        "location": {"lat": doc.location.latitude, "lon": doc.location.longitude},
        "document": document_to_json(doc),
    }


def vocabulary_terms(weighted: Sequence[tuple[str, str]]) -> set[str]:
    """The terms of a document (its `document_terms`) that typed words may be corrected to,
    as PostgreSQL's vocabulary: ASCII, not only digits."""
    return {term for term, _ in weighted if _ASCII_TERM.fullmatch(term) and not term.isdigit()}


def distance_km(a: GeoPoint, latitude: float, longitude: float) -> float:
    """The haversine distance PostgreSQL computes (the same radius and formula)."""
    h = (
        math.sin(math.radians(latitude - a.latitude) / 2) ** 2
        + math.cos(math.radians(a.latitude))
        * math.cos(math.radians(latitude))
        * math.sin(math.radians(longitude - a.longitude) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _to_millis(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // dt.timedelta(milliseconds=1)


def _from_millis(value: Any) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=int(value))


def _failure(item_id: str, status: int, error: Any) -> ItemFailure:
    if isinstance(error, dict):
        kind = str(error.get("type", "error"))
        reason = f"{kind}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause['reason']})"
    else:
        kind, reason = "error", str(error)
    retryable = status == 429 or status >= 500 or kind in _RETRYABLE_ERRORS
    return ItemFailure(item_id, f"{status} {reason}", retryable)


def _items(response: Any) -> list[tuple[int, Any]]:
    """(status, error or None) of each item of a bulk response, in order."""
    out: list[tuple[int, Any]] = []
    for item in response["items"]:
        (result,) = item.values()
        out.append((int(result.get("status", 500)), result.get("error")))
    return out


# --- the backend -----------------------------------------------------------------------------


class ElasticsearchSearch:
    """The ListingIndex on Elasticsearch. Reads and writes go through the alias; the admin
    methods (`ensure_index`, `create_index`, `switch_alias`, …) let a reindex build a new
    index beside the served one and switch atomically."""

    name = "elasticsearch"

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        index_prefix: str = "agribridge",
        count_limit: int = COUNT_LIMIT,
    ) -> None:
        self.client = client
        self.index_prefix = index_prefix
        # matches counted exactly (track_total_hits), as PostgreSQL's count_limit
        self.count_limit = count_limit
        self.alias = f"{index_prefix}-listings"
        self.vocabulary_index = f"{index_prefix}-vocabulary"
        self._template = f"{index_prefix}-listings"
        self._vocabulary_template = f"{index_prefix}-vocabulary"
        self._concrete = re.compile(rf"{re.escape(self.alias)}-\d{{8}}t\d{{6}}-[0-9a-f]{{6}}")

    async def health(self) -> Health:
        try:
            info = await self.client.options(request_timeout=3).cluster.health()
        except Exception as exc:
            return Health(ok=False, backend=self.name, detail=f"cluster unreachable: {exc}")
        status = str(info.get("status", "unknown"))
        return Health(ok=status in ("green", "yellow"), backend=self.name, detail=status)

    async def close(self) -> None:
        await self.client.close()

    # --- admin

    async def _put_templates(self) -> None:
        await self.client.indices.put_index_template(
            name=self._template,
            index_patterns=[f"{self.alias}-*"],
            priority=_TEMPLATE_PRIORITY,
            template={"settings": _SETTINGS, "mappings": LISTING_MAPPINGS},
        )
        await self.client.indices.put_index_template(
            name=self._vocabulary_template,
            index_patterns=[self.vocabulary_index],
            priority=_TEMPLATE_PRIORITY,
            template={"settings": _SETTINGS, "mappings": VOCABULARY_MAPPINGS},
        )

    def _new_index_name(self) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S")
        return f"{self.alias}-{stamp}-{secrets.token_hex(3)}"

    async def _alias_indices(self) -> list[str]:
        try:
            found = await self.client.indices.get_alias(name=self.alias)
        except NotFoundError:
            return []
        return sorted(found.body)

    async def ensure_index(self) -> bool:
        """Put the index templates; create an index behind the alias (and the vocabulary
        index) when missing. True when this call had to create something: the index is then
        incomplete and must be rebuilt from the database. Safe to run from several processes
        at once: the alias's single write index lets only one of them create the index, and
        only that one answers True."""
        await self._put_templates()
        vocabulary_created = False
        if not await self.client.indices.exists(index=self.vocabulary_index):
            response = await self.client.options(ignore_status=400).indices.create(
                index=self.vocabulary_index, settings=_SETTINGS, mappings=VOCABULARY_MAPPINGS
            )
            vocabulary_created = response.meta.status == 200  # else another process was first
        if await self.client.indices.exists_alias(name=self.alias):
            # the listings are there, their typo vocabulary was lost: rebuild to refill it;
            # unless the listings index is younger than the vocabulary this call created:
            # then another process starting at the same time created it, and rebuilds
            if not vocabulary_created:
                return False
            listings_ms = await self._created_ms(self.alias)
            return listings_ms < await self._created_ms(self.vocabulary_index)
        for attempt in range(2):
            try:
                await self.client.indices.create(
                    index=self._new_index_name(),
                    settings=_SETTINGS,
                    mappings=LISTING_MAPPINGS,
                    aliases={self.alias: {"is_write_index": True}},
                )
                return True
            except ApiError:
                # "alias has more than one write index": another process created it first
                # (and has the index rebuilt)
                if await self.client.indices.exists_alias(name=self.alias):
                    return False
                # a concrete index under the alias's name can only come from a write (an
                # external-version delete) that auto-created it while the alias was missing
                if attempt == 0 and await self.client.indices.exists(index=self.alias):
                    await self.client.options(ignore_status=(400, 404)).indices.delete(
                        index=self.alias
                    )
                    continue
                raise
        raise AssertionError("unreachable")

    async def _created_ms(self, index: str) -> int:
        """When the newest index behind `index` (a name or an alias) was created, in ms."""
        settings = await self.client.indices.get_settings(
            index=index, name="index.creation_date", flat_settings=True
        )
        return max(int(body["settings"]["index.creation_date"]) for body in settings.values())

    async def create_index(self) -> str:
        """A new empty concrete index, not behind the alias yet (for a reindex)."""
        await self._put_templates()
        name = self._new_index_name()
        await self.client.indices.create(index=name, settings=_SETTINGS, mappings=LISTING_MAPPINGS)
        return name

    async def switch_alias(self, target: str) -> None:
        """Point the alias at `target` alone in one atomic change, then delete the indices it
        pointed at before."""
        old = [name for name in await self._alias_indices() if name != target]
        actions: list[dict[str, Any]] = [
            {"add": {"index": target, "alias": self.alias, "is_write_index": True}}
        ]
        actions += [{"remove": {"index": name, "alias": self.alias}} for name in old]
        await self.client.indices.update_aliases(actions=actions)
        if old:
            await self.client.options(ignore_status=404).indices.delete(index=",".join(old))

    async def count(self, *, target: str | None = None) -> int:
        response = await self.client.count(index=target or self.alias)
        return int(response["count"])

    async def versions(self, ids: Sequence[str], *, target: str | None = None) -> dict[str, int]:
        """The indexed version of each of `ids`; ids not indexed are absent."""
        unique = list(dict.fromkeys(ids))
        found: dict[str, int] = {}
        for start in range(0, len(unique), _MGET_CHUNK):
            response = await self.client.mget(
                index=target or self.alias, ids=unique[start : start + _MGET_CHUNK], source=False
            )
            for doc in response["docs"]:
                if doc.get("found"):
                    found[doc["_id"]] = int(doc["_version"])
        return found

    async def refresh(self, *, target: str | None = None) -> None:
        """Make every write so far visible to searches (the listings and the vocabulary)."""
        await self.client.indices.refresh(
            index=[target or self.alias, self.vocabulary_index], ignore_unavailable=True
        )

    async def drop(self) -> None:
        """Delete the alias's indices, every index this prefix created, the vocabulary and the
        templates (for tests and for starting over)."""
        names = set(await self._alias_indices())
        listed = await self.client.indices.get_alias(
            index=f"{self.alias}-*", allow_no_indices=True, expand_wildcards="all"
        )
        names |= {name for name in listed.body if self._concrete.fullmatch(name)}
        names.add(self.vocabulary_index)
        await self.client.options(ignore_status=404).indices.delete(
            index=",".join(sorted(names)), ignore_unavailable=True
        )
        # a stray index under the alias's name (see ensure_index); the alias is gone by now
        await self.client.options(ignore_status=(400, 404)).indices.delete(index=self.alias)
        for template in (self._template, self._vocabulary_template):
            await self.client.options(ignore_status=404).indices.delete_index_template(
                name=template
            )

    # --- writing

    async def index(
        self, documents: Sequence[ListingDocument], *, target: str | None = None
    ) -> list[ItemFailure]:
        """Add or replace documents in one bulk request; the cluster refuses a version older
        than the indexed one (a 409, not a failure) and rewrites the same version, as
        PostgreSQL does (`external_gte`: a reindex after the analysis changed, a listing shown
        again after a deletion of its unchanged version). With `target`, into that concrete
        index instead of the alias. Raises when the cluster cannot be reached or refuses the
        whole request; returns the listings it did not apply (or whose typo vocabulary it could
        not record)."""
        latest: dict[str, ListingDocument] = {}
        for doc in documents:
            if doc.id not in latest or latest[doc.id].version < doc.version:
                latest[doc.id] = doc
        if not latest:
            return []
        operations: list[dict[str, Any]] = []
        carriers: dict[str, list[str]] = {}  # vocabulary term → the listings carrying it
        for doc in latest.values():
            action: dict[str, Any] = {
                "_index": target or self.alias,
                "_id": doc.id,
                "version": doc.version,
                "version_type": "external_gte",
            }
            if target is None:
                # never let a write auto-create an index under the alias's name
                action["require_alias"] = True
            weighted = document_terms(doc)
            operations += [{"index": action}, listing_source(doc, weighted)]
            for term in vocabulary_terms(weighted):
                carriers.setdefault(term, []).append(doc.id)
        terms = sorted(carriers)
        for term in terms:
            operations += [
                {"create": {"_index": self.vocabulary_index, "_id": term}},
                {"term": term},
            ]
        response = await self.client.bulk(operations=operations)
        failures: dict[str, ItemFailure] = {}
        if not response.get("errors"):
            return []
        items = _items(response)
        for doc_id, (status, error) in zip(latest, items[: len(latest)], strict=True):
            if error is not None and status != 409:
                failures[doc_id] = _failure(doc_id, status, error)
        for term, (status, error) in zip(terms, items[len(latest) :], strict=True):
            if error is not None and status != 409:
                # the listing is indexed but its words cannot correct typos yet
                for doc_id in carriers[term]:
                    if doc_id not in failures:
                        failure = _failure(doc_id, status, error)
                        failures[doc_id] = ItemFailure(
                            doc_id, f"vocabulary term {term!r}: {failure.reason}", failure.retryable
                        )
        return list(failures.values())

    async def delete(
        self, deletions: Sequence[Deletion], *, target: str | None = None
    ) -> list[ItemFailure]:
        """Remove listings unless a newer version than the deletion's is indexed (external
        versions, `external_gte`: the deletion of the indexed version itself applies). A
        listing that is not indexed is not a failure."""
        if not deletions:
            return []
        operations = [
            {
                "delete": {
                    "_index": target or self.alias,
                    "_id": d.id,
                    "version": d.version,
                    "version_type": "external_gte",
                }
            }
            for d in deletions
        ]
        response = await self.client.bulk(operations=operations)
        if not response.get("errors"):
            return []
        return [
            _failure(d.id, status, error)
            for d, (status, error) in zip(deletions, _items(response), strict=True)
            if error is not None and status != 409
        ]

    # --- reading

    async def _analyse(self, query_text: str) -> AnalysedQuery:
        analysed = analyse_query(query_text)
        words = analysed.fuzzy_words()
        if not words:
            return analysed
        response = await self.client.search(
            index=self.vocabulary_index,
            ignore_unavailable=True,
            size=_FUZZY_EXPANSIONS * len(words),
            source=False,
            query={
                "bool": {
                    "should": [
                        {
                            "fuzzy": {
                                "term": {
                                    "value": word,
                                    "fuzziness": ES_FUZZINESS,
                                    "transpositions": True,
                                    "prefix_length": 0,
                                    "max_expansions": _FUZZY_EXPANSIONS,
                                }
                            }
                        }
                        for word in words
                    ]
                }
            },
        )
        found = [hit["_id"] for hit in response["hits"]["hits"]]
        for word in words:
            if word in found and not await self._indexed(word):
                # the vocabulary only grows: a word no listing holds any more (a misspelt
                # title since closed) is not known, or it would never be corrected again
                found.remove(word)
        vocabulary: set[str] = set()
        for word in words:
            vocabulary.update(typo_candidates(word, found))
        return analysed.with_typos(vocabulary)

    async def _indexed(self, term: str) -> bool:
        """Whether a listing in the index holds `term`."""
        response = await self.client.count(index=self.alias, query={"term": {_MATCH_FIELD: term}})
        return int(response["count"]) > 0

    @staticmethod
    def _filters(query: Query, analysed: AnalysedQuery) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        if not analysed.empty:
            filters.append(analysed.es_query(_MATCH_FIELD))
        if query.category:
            filters.append({"term": {"category_code": query.category}})
        if query.region_code:
            code = query.region_code
            field = (
                "province_code"
                if code.endswith("0000")
                else "city_code"
                if code.endswith("00")
                else "county_code"
            )
            filters.append({"term": {field: code}})
        if query.poverty_counties_only:
            filters.append({"term": {"is_poverty_county": True}})
        if query.certification:
            filters.append({"term": {"certifications": query.certification}})
        if query.storage_class:
            filters.append({"term": {"storage_class": query.storage_class}})
        if query.sale_mode:
            filters.append({"term": {"sale_mode": query.sale_mode}})
        price: dict[str, int] = {}
        if query.price_min_fen is not None:
            price["gte"] = query.price_min_fen
        if query.price_max_fen is not None:
            price["lte"] = query.price_max_fen
        if price:
            filters.append({"range": {"unit_price_fen": price}})
        if query.min_poor_share_bp is not None:
            filters.append({"range": {"poor_share_bp": {"gte": query.min_poor_share_bp}}})
        if query.min_available is not None:
            filters.append({"range": {"quantity_available": {"gte": query.min_available}}})
        if query.near is not None and query.max_distance_km is not None:
            filters.append(
                {
                    "geo_distance": {
                        "distance": f"{float(query.max_distance_km)!r}km",
                        "distance_type": "arc",
                        "location": {"lat": query.near.latitude, "lon": query.near.longitude},
                    }
                }
            )
        return filters

    @staticmethod
    def _scoring(analysed: AnalysedQuery) -> list[dict[str, Any]]:
        """Scores only (the filters decide what matches): for each group, the boosts of the
        fields holding one of its terms, added up (WEIGHT_BOOSTS, as PostgreSQL computes it).
        Term fields index no frequencies or norms, and a `terms` query scores a constant
        boost; BM25's IDF would only shift whole groups. The scores are small integers, exact
        in the float32 scores that `search_after` compares, and the same on every shard and
        replica, so that relevance cursors never skip or repeat."""
        return [
            {"terms": {field: list(group.terms), "boost": boost}}
            for group in analysed.groups
            for field, boost in _BOOSTS.items()
        ]

    @staticmethod
    def _sort(sort: str, query: Query) -> list[Any]:
        """The sort keys, then the id ascending as PostgreSQL breaks ties."""
        first: Any = {
            "relevance": {"_score": "desc"},
            "price_asc": {"unit_price_fen": "asc"},
            "price_desc": {"unit_price_fen": "desc"},
            "newest": {"published_at": "desc"},
            # PostgreSQL sorts coalesce(poor_share_bp, -1)
            "poor_share": {"poor_share_bp": {"order": "desc", "missing": -1}},
        }.get(sort)
        if sort == "distance":
            assert query.near is not None
            first = {
                "_geo_distance": {
                    "location": {"lat": query.near.latitude, "lon": query.near.longitude},
                    "order": "asc",
                    "unit": "km",
                    "distance_type": "arc",
                }
            }
        return [first, {"id": "asc"}]

    @staticmethod
    def _search_after(cursor: str, sort: str) -> list[Any]:
        """The cursor as search_after values (decode_cursor has checked its key's type)."""
        (value,), after_id = decode_cursor(cursor, sort)
        if sort == "newest":
            return [_to_millis(value), after_id]
        return [value, after_id]

    async def search(self, query: Query) -> Result:
        limit = max(1, min(query.limit, MAX_LIMIT))
        analysed = await self._analyse(query.text)
        sort = query.sort
        if sort == "relevance" and analysed.empty:
            sort = "newest"
        if sort == "distance" and query.near is None:
            raise ValueError("sorting by distance needs a point (near)")

        body: dict[str, Any] = {
            "query": {
                "bool": {
                    "filter": self._filters(query, analysed),
                    "should": self._scoring(analysed),
                }
            },
            "sort": self._sort(sort, query),
            "size": limit + 1,
            "track_total_hits": self.count_limit,
            "_source": ["document"],
        }
        if not analysed.empty and sort != "relevance":
            body["track_scores"] = True
        if query.cursor:
            body["search_after"] = self._search_after(query.cursor, sort)
        if query.facets:
            body["aggs"] = self._facet_aggs()

        response = await self.client.search(index=self.alias, body=body)
        rows = response["hits"]["hits"]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            key = rows[-1]["sort"][0]
            if sort == "newest":
                key = _from_millis(key)
            next_cursor = encode_cursor(sort, [key], rows[-1]["_id"])
        hits = []
        for row in rows:
            doc = document_from_json(row["_source"]["document"])
            hits.append(
                Hit(
                    id=row["_id"],
                    score=float(row.get("_score") or 0.0) if not analysed.empty else 0.0,
                    distance_km=(
                        distance_km(query.near, doc.location.latitude, doc.location.longitude)
                        if query.near is not None
                        else None
                    ),
                    highlight=highlight(doc.title_zh, analysed) if not analysed.empty else None,
                    document=doc,
                )
            )
        counted = response["hits"]["total"]
        total = min(int(counted["value"]), self.count_limit)
        exact = counted.get("relation", "eq") == "eq" and int(counted["value"]) <= self.count_limit
        # facets count every match (aggregations are not bounded by track_total_hits)
        facets = self._facets(response["aggregations"]) if query.facets else {}
        return Result(
            hits=hits, total=total, next_cursor=next_cursor, facets=facets, total_exact=exact
        )

    @staticmethod
    def _facet_aggs() -> dict[str, Any]:
        aggs: dict[str, Any] = {
            name: {
                "terms": {
                    "field": field,
                    "size": _FACET_SIZE,
                    "order": [{"_count": "desc"}, {"_key": "asc"}],
                }
            }
            for name, field in _VALUE_FACETS.items()
        }
        ranges: list[dict[str, Any]] = []
        for low, high in PRICE_BUCKETS:
            bucket: dict[str, Any] = {"key": _price_label(low, high), "from": low}
            if high is not None:
                bucket["to"] = high
            ranges.append(bucket)
        aggs["price"] = {"range": {"field": "unit_price_fen", "ranges": ranges}}
        return aggs

    @staticmethod
    def _facets(aggregations: dict[str, Any]) -> dict[str, list[FacetCount]]:
        facets: dict[str, list[FacetCount]] = {}
        for name in _VALUE_FACETS:
            counts = [(str(b["key"]), int(b["doc_count"])) for b in aggregations[name]["buckets"]]
            facets[name] = [
                FacetCount(v, n) for v, n in sorted(counts, key=lambda x: (-x[1], x[0]))
            ]
        prices = {str(b["key"]): int(b["doc_count"]) for b in aggregations["price"]["buckets"]}
        facets["price"] = [
            FacetCount(label, prices.get(label, 0))
            for label in (_price_label(low, high) for low, high in PRICE_BUCKETS)
        ]
        return facets

    async def suggest(self, prefix: str, limit: int = 10) -> list[str]:
        """Distinct titles, most recent first, whose title terms start with the analysed
        prefix: Chinese characters and words as typed, pinyin and English by prefix."""
        analysed = analyse_query(prefix)
        if analysed.empty:
            return []
        filters = []
        for i, group in enumerate(analysed.groups):
            last = i == len(analysed.groups) - 1
            filters.append(
                {
                    "bool": {
                        "should": [
                            {"prefix": {"terms_title": term}}
                            if last and _ASCII_TERM.fullmatch(term)
                            else {"term": {"terms_title": term}}
                            for term in group.terms
                        ],
                        "minimum_should_match": 1,
                    }
                }
            )
        response = await self.client.search(
            index=self.alias,
            size=0,
            query={"bool": {"filter": filters}},
            aggs={
                "titles": {
                    "terms": {
                        "field": "title_zh",
                        "size": max(1, min(limit, MAX_LIMIT)),
                        "order": [{"latest": "desc"}, {"_key": "asc"}],
                    },
                    "aggs": {"latest": {"max": {"field": "published_at"}}},
                }
            },
        )
        return [str(b["key"]) for b in response["aggregations"]["titles"]["buckets"]]
