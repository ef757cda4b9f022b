"""What only the Elasticsearch backend does: external versions, per-item failures, the index
template, the alias with its concrete indices (ensure, reindex, switch) and a cluster that is
gone. The answers to queries are checked against PostgreSQL's in test_search_backends.py.

osmem-server, an in-memory OpenSearch-compatible server, stands in for Elasticsearch here
(tests/peers.py); the client talks to it with plain JSON (`opensearch_compat=True`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from elasticsearch import ConnectionError as ElasticConnectionError

from search.base import Deletion, GeoPoint, Query
from search.elasticsearch import LISTING_MAPPINGS, ElasticsearchSearch, make_client
from search.postgres import document_from_json
from tests.peers import search_server
from tests.test_search_backends import DOCUMENTS, _by_id, ids


@pytest.fixture(scope="module")
def search_url() -> Iterator[str]:
    with search_server() as server:
        yield server.url


def _backend(url: str) -> ElasticsearchSearch:
    return ElasticsearchSearch(
        make_client(url, opensearch_compat=True), index_prefix=f"t{uuid.uuid4().hex[:12]}"
    )


@pytest.fixture
async def elastic(search_url: str) -> AsyncIterator[ElasticsearchSearch]:
    """A backend with indices of its own (a fresh prefix), created but empty; dropped after."""
    backend = _backend(search_url)
    try:
        await backend.ensure_index()
        yield backend
    finally:
        await backend.drop()
        await backend.close()


async def _indices(backend: ElasticsearchSearch) -> list[str]:
    found = await backend.client.indices.get_alias(
        index=f"{backend.index_prefix}-*", allow_no_indices=True
    )
    return sorted(found.body)


async def test_older_versions_are_refused_without_a_failure(elastic):
    goji = _by_id("goji_jingyuan")
    assert await elastic.index([replace(goji, version=5, title_zh="靖远枸杞 新货")]) == []
    # an older document and an older deletion arrive late: the cluster refuses both (409)
    assert await elastic.index([replace(goji, version=4, title_zh="靖远枸杞 旧货")]) == []
    assert await elastic.delete([Deletion(goji.id, 4)]) == []
    await elastic.refresh()
    assert await elastic.versions([goji.id]) == {goji.id: 5}
    assert ids(await elastic.search(Query(text="新货"))) == [goji.id]
    assert ids(await elastic.search(Query(text="旧货"))) == []

    # the same version is rewritten, as on PostgreSQL (a reindex after the analysis changed)
    assert await elastic.index([replace(goji, version=5, title_zh="靖远枸杞 重发")]) == []
    await elastic.refresh()
    assert ids(await elastic.search(Query(text="重发"))) == [goji.id]
    # the deletion of the indexed version applies
    assert await elastic.delete([Deletion(goji.id, 5)]) == []
    await elastic.refresh()
    assert await elastic.versions([goji.id]) == {}
    assert ids(await elastic.search(Query(text="枸杞"))) == []
    # the deletion leaves a tombstone (for index.gc_deletes, 60 s by default): an update older
    # than the deletion that arrives late does not bring the listing back
    assert await elastic.index([replace(goji, version=4)]) == []
    await elastic.refresh()
    assert await elastic.count() == 0
    # the listing shown again at its unchanged version comes back
    shown_again = replace(goji, version=5)
    assert await elastic.index([shown_again]) == []
    await elastic.refresh()
    assert await elastic.versions([goji.id, "missing"]) == {goji.id: 5}
    assert (await elastic.search(Query(text="枸杞"))).hits[0].document == shown_again


async def test_typed_words_are_corrected_from_the_vocabulary_index(elastic):
    honey = replace(_by_id("honey"), title_en="Miyun raw honey")
    assert await elastic.index([honey, _by_id("goji_jingyuan")]) == []
    await elastic.refresh()
    found = await elastic.client.search(index=elastic.vocabulary_index, size=1000)
    vocabulary = {hit["_id"] for hit in found["hits"]["hits"]}
    assert {"gouqi", "gq", "miyun", "raw", "honey", "fengmi"} <= vocabulary
    assert not any(not t.isascii() or t.isdigit() for t in vocabulary)
    assert ids(await elastic.search(Query(text="miyn"))) == ["honey"]
    assert ids(await elastic.search(Query(text="raww honey"))) == ["honey"]
    # short words are exact
    assert ids(await elastic.search(Query(text="rwa"))) == []


async def test_counts_stop_at_the_limit_and_say_so(elastic):
    """As on PostgreSQL, past count_limit the total is a lower bound (total_exact false);
    the facets still count every match."""
    assert await elastic.index(DOCUMENTS) == []
    await elastic.refresh()
    capped = ElasticsearchSearch(elastic.client, index_prefix=elastic.index_prefix, count_limit=5)
    result = await capped.search(Query(facets=True, limit=100))
    assert (result.total, result.total_exact, len(result.hits)) == (5, False, len(DOCUMENTS))
    assert sum(f.count for f in result.facets["storage_class"]) == len(DOCUMENTS)
    walked = await capped.search(Query(limit=10))
    assert walked.next_cursor is not None
    rest = await capped.search(Query(limit=10, cursor=walked.next_cursor))
    assert len(walked.hits) + len(rest.hits) == len(DOCUMENTS) and rest.next_cursor is None
    exact = await elastic.search(Query(text="甘肃"))
    assert (exact.total, exact.total_exact) == (6, True)
    at_limit = await capped.search(Query(text="甘肃", region_code="620400"))
    assert (at_limit.total, at_limit.total_exact) == (5, True)


async def test_a_refused_document_fails_alone(elastic):
    bad = replace(_by_id("honey"), location=GeoPoint(200.0, 116.8))  # no such latitude
    failures = await elastic.index([DOCUMENTS[0], bad, DOCUMENTS[1]])
    assert len(failures) == 1
    (failure,) = failures
    assert failure.id == "honey"
    assert failure.retryable is False
    assert "400" in failure.reason and "location" in failure.reason
    await elastic.refresh()
    assert sorted(ids(await elastic.search(Query()))) == ["goji_jingyuan", "goji_zhongning"]
    assert await elastic.versions(["honey"]) == {}


async def test_writes_to_a_missing_or_closed_index_are_retryable(elastic):
    await elastic.index(DOCUMENTS[:2])
    (concrete,) = await elastic._alias_indices()

    await elastic.client.indices.close(index=concrete)
    failures = await elastic.index(DOCUMENTS[2:4])
    assert [(f.id, f.retryable) for f in failures] == [("flour", True), ("melon_seeds", True)]
    assert "index_closed_exception" in failures[0].reason
    await elastic.client.indices.open(index=concrete)

    # deleted behind the backend's back: writes through the alias never auto-create an index
    await elastic.client.indices.delete(index=concrete)
    failures = await elastic.index(DOCUMENTS[2:4])
    assert [(f.id, f.retryable) for f in failures] == [("flour", True), ("melon_seeds", True)]
    assert "index_not_found_exception" in failures[0].reason
    assert not await elastic.client.indices.exists(index=elastic.alias)

    assert await elastic.ensure_index() is True
    assert await elastic.index(DOCUMENTS) == []
    await elastic.refresh()
    assert await elastic.count() == len(DOCUMENTS)


async def test_ensure_index_creates_once_and_again_after_a_loss(search_url):
    backend = _backend(search_url)
    try:
        assert await backend.ensure_index() is True
        assert await backend.ensure_index() is False
        (first,) = await backend._alias_indices()
        assert first.startswith(f"{backend.index_prefix}-listings-")
        assert await backend.count() == 0

        # the concrete index is deleted behind the backend's back
        await backend.client.indices.delete(index=first)
        assert await backend.ensure_index() is True
        (second,) = await backend._alias_indices()
        assert second != first
        assert await backend.ensure_index() is False

        # a deletion through the missing alias auto-creates an index under the alias's name
        # (external versions keep a tombstone); ensure_index replaces it with a real one
        await backend.client.indices.delete(index=second)
        assert await backend.delete([Deletion("honey", 3)]) == []
        assert await backend.client.indices.exists(index=backend.alias)
        assert not await backend.client.indices.exists_alias(name=backend.alias)
        assert await backend.ensure_index() is True
        (third,) = await backend._alias_indices()
        assert third.startswith(f"{backend.index_prefix}-listings-")
        assert await backend.index(DOCUMENTS[:1]) == []
    finally:
        await backend.drop()
        await backend.close()
    assert await _indices(backend) == []


def _processes(search_url: str, count: int) -> list[ElasticsearchSearch]:
    """Backends as `count` processes would have them: own clients, one index prefix."""
    first = _backend(search_url)
    return [
        first,
        *(
            ElasticsearchSearch(
                make_client(search_url, opensearch_compat=True), index_prefix=first.index_prefix
            )
            for _ in range(count - 1)
        ),
    ]


@pytest.mark.parametrize("round", range(5))
async def test_processes_ensuring_the_index_at_once_create_one(search_url, round):
    backends = _processes(search_url, 4)
    first = backends[0]
    try:
        created = await asyncio.gather(*(b.ensure_index() for b in backends))
        assert sorted(created) == [False, False, False, True]  # one process rebuilds
        assert len(await first._alias_indices()) == 1
        assert await backends[1].index(DOCUMENTS[:2]) == []
        await first.refresh()
        assert await first.count() == 2

        # the index is lost: again exactly one of them recreates it
        await first.client.indices.delete(index=",".join(await first._alias_indices()))
        created = await asyncio.gather(*(b.ensure_index() for b in backends))
        assert sorted(created) == [False, False, False, True]
        assert len(await first._alias_indices()) == 1
    finally:
        await first.drop()
        for backend in backends:
            await backend.close()


async def test_a_lost_vocabulary_has_exactly_one_process_rebuild(search_url, monkeypatch):
    """The listings index is there but its typo vocabulary was lost: the one process that
    creates the vocabulary again answers True (rebuild), the others False; on an empty
    cluster the process that created the listings index is the one, even when another
    created the vocabulary just before it (its listings index is then the younger)."""
    backends = _processes(search_url, 4)
    first = backends[0]
    try:
        assert await first.ensure_index() is True
        await first.client.indices.delete(index=first.vocabulary_index)
        created = await asyncio.gather(*(b.ensure_index() for b in backends))
        assert sorted(created) == [False, False, False, True]
        assert await first.ensure_index() is False

        # both lost: one process recreates the vocabulary, and before it looks for the
        # listings, another process (finding the vocabulary there) creates them
        await first.client.indices.delete(index=",".join(await first._alias_indices()))
        await first.client.indices.delete(index=first.vocabulary_index)
        slow, other = backends[2], backends[3]
        looked_up = slow.client.indices.exists_alias
        answers = []

        async def others_first(**kwargs):
            answers.append(await other.ensure_index())
            return await looked_up(**kwargs)

        monkeypatch.setattr(slow.client.indices, "exists_alias", others_first)
        assert await slow.ensure_index() is False  # its vocabulary is the older index
        assert answers == [True]  # the process that created the listings rebuilds
    finally:
        await first.drop()
        for backend in backends:
            await backend.close()


async def test_a_reindex_builds_beside_the_served_index_and_switches(elastic):
    old_documents, new_documents = DOCUMENTS[:3], DOCUMENTS[3:]
    assert await elastic.index(old_documents) == []
    await elastic.refresh()
    (old,) = await elastic._alias_indices()

    target = await elastic.create_index()
    assert target != old and target.startswith(f"{elastic.index_prefix}-listings-")
    assert await elastic._alias_indices() == [old]
    assert await elastic.index(new_documents, target=target) == []
    await elastic.refresh(target=target)
    assert await elastic.count(target=target) == len(new_documents)
    assert await elastic.versions(["honey", "flour"], target=target) == {"honey": 1}

    # searches keep answering from the served index while the new one fills
    served = await elastic.search(Query(limit=100))
    assert sorted(ids(served)) == sorted(d.id for d in old_documents)
    assert await elastic.count() == len(old_documents)

    await elastic.switch_alias(target)
    assert await elastic._alias_indices() == [target]
    assert not await elastic.client.indices.exists(index=old)
    switched = await elastic.search(Query(limit=100))
    assert sorted(ids(switched)) == sorted(d.id for d in new_documents)
    assert ids(await elastic.search(Query(text="蜂蜜"))) == ["honey"]
    assert await elastic.count() == len(new_documents)


async def test_the_template_and_the_stored_document(elastic):
    # any index matching the pattern gets the strict mapping, whoever creates it
    manual = f"{elastic.alias}-manual"
    await elastic.client.indices.create(index=manual)
    mapping = (await elastic.client.indices.get_mapping(index=manual))[manual]["mappings"]
    assert mapping["dynamic"] == "strict"
    types = {name: spec.get("type", "object") for name, spec in mapping["properties"].items()}
    assert types == {
        name: spec.get("type", "object") for name, spec in LISTING_MAPPINGS["properties"].items()
    }
    assert types["location"] == "geo_point" and types["title_zh"] == "keyword"
    assert mapping["properties"]["title_zh"]["fields"]["cjk"]["analyzer"] == "cjk"
    await elastic.client.indices.delete(index=manual)

    # the stored document rebuilds the ListingDocument exactly
    lamb = _by_id("lamb")
    assert await elastic.index([replace(lamb, version=7)]) == []
    got = await elastic.client.get(index=elastic.alias, id="lamb")
    assert document_from_json(got["_source"]["document"]) == replace(lamb, version=7)
    assert got["_version"] == 7

    # drop removes indices, vocabulary and templates
    await elastic.drop()
    assert await _indices(elastic) == []
    assert not await elastic.client.indices.exists_index_template(name=elastic.alias)
    assert await elastic.ensure_index() is True  # so that the fixture's drop has work to do


async def test_a_cluster_that_is_gone():
    with search_server() as server:
        backend = _backend(server.url)
        assert await backend.ensure_index() is True
        assert (await backend.health()).ok is True
    # the server is stopped now
    health = await backend.health()
    assert health.ok is False
    assert health.backend == "elasticsearch" and "unreachable" in health.detail
    with pytest.raises(ElasticConnectionError):
        await backend.index(DOCUMENTS[:1])
    with pytest.raises(ElasticConnectionError):
        await backend.search(Query(text="枸杞"))
    await backend.close()
