"""Both search backends against one golden table of queries.

Every test taking `backend` runs on PostgreSQL and on Elasticsearch, which must give the same
answers. Elasticsearch is osmem-server here, an in-memory OpenSearch-compatible server standing
in for a real cluster (tests/peers.py). The golden table lists relevance cases as sets, and
`test_relevance_is_the_same_on_every_backend` checks their order and scores against a
reference computed here from the analysis (search.base.WEIGHT_BOOSTS); every explicit sort
compares the exact order."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from market.listings.router import create_read_pool
from search.analysis import analyse_query
from search.base import (
    MAX_LIMIT,
    WEIGHT_BOOSTS,
    Deletion,
    FacetCount,
    GeoPoint,
    ListingDocument,
    ListingIndex,
    Query,
    Result,
)
from search.elasticsearch import ElasticsearchSearch, make_client
from search.postgres import (
    PostgresSearch,
    decode_cursor,
    document_from_json,
    document_terms,
    document_to_json,
    encode_cursor,
    sql_constant,
)
from tests.peers import search_server

BEIJING = GeoPoint(39.9042, 116.4074)
GI, GREEN, ORGANIC = "geographical_indication", "green_food", "organic"


def _doc(
    id: str,
    title: str,
    *,
    product: str,
    county: tuple[str, str, str | None, str],
    coop: str,
    category: str,
    certifications: tuple[str, ...],
    price: int,
    poor_share: int | None,
    location: tuple[float, float],
    day: int,
    poverty: bool = False,
    storage: str = "ambient",
    sale_mode: str = "spot",
    available: int = 1000,
    brand: str | None = None,
    title_en: str | None = None,
) -> ListingDocument:
    code, county_name, city_name, province_name = county
    return ListingDocument(
        id=id,
        version=1,
        title_zh=title,
        title_en=title_en,
        product_name_zh=product,
        regional_brand=brand,
        cooperative_id=f"coop-{id}",
        cooperative_name_zh=coop,
        county_code=code,
        county_name_zh=county_name,
        city_name_zh=city_name,
        province_name_zh=province_name,
        is_poverty_county=poverty,
        category_code=category,
        certifications=certifications,
        storage_class=storage,
        sale_mode=sale_mode,
        unit_price_fen=price,
        quantity_available=available,
        poor_share_bp=poor_share,
        location=GeoPoint(*location),
        published_at=dt.datetime(2026, 11, day, 8, 0, tzinfo=dt.UTC),
    )


JINGYUAN = ("620421", "靖远县", "白银市", "甘肃省")
JINGTAI = ("620423", "景泰县", "白银市", "甘肃省")
HUINING = ("620422", "会宁县", "白银市", "甘肃省")
LINZE = ("620723", "临泽县", "张掖市", "甘肃省")
ZHONGNING = ("640521", "中宁县", "中卫市", "宁夏回族自治区")
YANCHI = ("640323", "盐池县", "吴忠市", "宁夏回族自治区")
MIYUN = ("110118", "密云区", None, "北京市")
CHANGPING = ("110114", "昌平区", None, "北京市")
PUJIANG = ("510131", "蒲江县", "成都市", "四川省")
PIDU = ("510117", "郫都区", "成都市", "四川省")

DOCUMENTS: list[ListingDocument] = [
    _doc(
        "goji_jingyuan", "靖远枸杞 特级干果 500g", product="枸杞", county=JINGYUAN,
        coop="靖远县乌兰镇农民专业合作社", category="dried_fruit", certifications=(GI, GREEN),
        price=6800, poor_share=4200, location=(36.5666, 104.6833), day=1, poverty=True,
        available=800,
    ),
    _doc(
        "goji_zhongning", "宁夏中宁枸杞 头茬", product="枸杞", county=ZHONGNING,
        coop="中宁县舟塔乡农民专业合作社", category="dried_fruit", certifications=(GI, ORGANIC),
        price=8800, poor_share=None, location=(37.4919, 105.6850), day=2, sale_mode="presale",
        brand="中宁枸杞", available=300,
    ),
    _doc(
        "flour", "景泰和尚头全麦面粉 5kg", product="和尚头面粉", county=JINGTAI,
        coop="景泰县条山农民专业合作社", category="grain", certifications=(GI,),
        price=4500, poor_share=1500, location=(37.1836, 104.0633), day=3, available=5000,
    ),
    _doc(
        "melon_seeds", "会宁黑瓜子 原味", product="黑瓜子", county=HUINING,
        coop="会宁县郭城驿农民专业合作社", category="nuts_seeds", certifications=(),
        price=2600, poor_share=6100, location=(35.6925, 105.0533), day=4, poverty=True,
        available=2000,
    ),
    _doc(
        "jujube_small", "靖远小口大枣 一级", product="大枣", county=JINGYUAN,
        coop="靖远县东湾镇农民专业合作社", category="dried_fruit", certifications=(GREEN,),
        price=1800, poor_share=3300, location=(36.5666, 104.6833), day=5, poverty=True,
        available=1500,
    ),
    _doc(
        "jujube_linze", "临泽小枣 免洗", product="红枣", county=LINZE,
        coop="临泽县沙河镇农民专业合作社", category="dried_fruit", certifications=(),
        price=2200, poor_share=None, location=(39.1525, 100.1643), day=6, available=100,
    ),
    _doc(
        "lamb", "盐池滩羊肉 羊排 2kg", product="滩羊肉", county=YANCHI,
        coop="盐池县花马池农民专业合作社", category="meat", certifications=(GI,),
        price=12800, poor_share=2500, location=(37.7833, 107.4072), day=7, poverty=True,
        storage="frozen", brand="盐池滩羊", available=400,
    ),
    _doc(
        "millet", "会宁小米 黄小米", product="小米", county=HUINING,
        coop="会宁县丁家沟农民专业合作社", category="grain", certifications=(ORGANIC,),
        price=900, poor_share=5200, location=(35.6925, 105.0533), day=8, poverty=True,
        available=3000,
    ),
    _doc(
        "honey", "密云土蜂蜜 荆花蜜 500g", product="蜂蜜", county=MIYUN,
        coop="密云区穆家峪农民专业合作社", category="honey", certifications=(ORGANIC,),
        price=7500, poor_share=None, location=(40.3764, 116.8432), day=9, available=600,
    ),
    _doc(
        "apple", "昌平苹果 富士 一级", product="苹果", county=CHANGPING,
        coop="昌平区兴寿农民专业合作社", category="fresh_fruit", certifications=(GREEN,),
        price=1200, poor_share=0, location=(40.2207, 116.2312), day=10, storage="chilled",
        available=2500,
    ),
    _doc(
        "kiwi", "蒲江猕猴桃 红心", product="猕猴桃", county=PUJIANG,
        coop="蒲江县寿安农民专业合作社", category="fresh_fruit", certifications=(GI, ORGANIC),
        price=1500, poor_share=800, location=(30.1966, 103.5061), day=11, storage="chilled",
        sale_mode="presale", available=1200,
    ),
    _doc(
        "douban", "郫县豆瓣 一级 500g", product="豆瓣酱", county=PIDU,
        coop="郫都区唐昌农民专业合作社", category="condiment", certifications=(GI,),
        price=1600, poor_share=None, location=(30.8054, 103.9012), day=12, available=700,
    ),
]  # fmt: skip

ALL = [d.id for d in DOCUMENTS]
GOJI = ["goji_jingyuan", "goji_zhongning"]
GANSU = ["goji_jingyuan", "flour", "melon_seeds", "jujube_small", "jujube_linze", "millet"]
BAIYIN = ["goji_jingyuan", "flour", "melon_seeds", "jujube_small", "millet"]


@dataclass(frozen=True)
class Golden:
    name: str
    query: dict[str, Any]
    expected: list[str]
    ordered: bool = False  # relevance order is checked by test_relevance_is_the_same_…


GOLDEN: list[Golden] = [
    # Chinese words and phrases
    Golden("word", {"text": "枸杞"}, GOJI),
    Golden("synonym member", {"text": "枸杞子"}, GOJI),
    Golden("region and word", {"text": "宁夏枸杞"}, ["goji_zhongning"]),
    Golden("county and word", {"text": "靖远枸杞"}, ["goji_jingyuan"]),
    Golden("two words, synonym", {"text": "靖远 红枣"}, ["jujube_small"]),
    Golden("long word as bigrams", {"text": "猕猴桃"}, ["kiwi"]),
    Golden("brand word", {"text": "和尚头"}, ["flour"]),
    Golden("word inside a word", {"text": "羊排"}, ["lamb"]),
    Golden("stop character", {"text": "宁夏的枸杞"}, ["goji_zhongning"]),
    Golden("province", {"text": "甘肃"}, GANSU),
    Golden("county", {"text": "会宁"}, ["melon_seeds", "millet"]),
    Golden("city and product", {"text": "北京 蜂蜜"}, ["honey"]),
    Golden("nothing", {"text": "榴莲"}, []),
    # one character
    Golden("one character", {"text": "枣"}, ["jujube_small", "jujube_linze"]),
    Golden("one character, several", {"text": "米"}, ["millet"]),
    # pinyin and English
    Golden("pinyin", {"text": "gouqi"}, GOJI),
    Golden("pinyin initials", {"text": "gq"}, GOJI),
    Golden("pinyin of a brand", {"text": "heshangtou"}, ["flour"]),
    Golden("pinyin, upper case", {"text": "XiaoMi"}, ["millet"]),
    Golden("english", {"text": "wolfberry"}, GOJI),
    Golden("english plural", {"text": "Wolfberries"}, GOJI),
    Golden("english jujube", {"text": "jujube"}, ["jujube_small", "jujube_linze"]),
    Golden("english phrase", {"text": "melon seeds"}, ["melon_seeds"]),
    Golden("english and pinyin place", {"text": "goji ningxia"}, ["goji_zhongning"]),
    # typos
    Golden("pinyin typo", {"text": "gouqu"}, GOJI),
    Golden("english typo", {"text": "wolfbery"}, GOJI),
    Golden("english swap", {"text": "hoeny"}, ["honey"]),
    Golden("short words are exact", {"text": "gou"}, []),
    # filters
    Golden("province prefix", {"region_code": "620000", "sort": "price_asc"},
           ["millet", "jujube_small", "jujube_linze", "melon_seeds", "flour", "goji_jingyuan"],
           ordered=True),
    Golden("city prefix", {"region_code": "620400"}, BAIYIN),
    Golden("county prefix", {"region_code": "620421"}, ["goji_jingyuan", "jujube_small"]),
    Golden("municipality", {"region_code": "110000"}, ["honey", "apple"]),
    Golden("price range", {"region_code": "620000", "price_min_fen": 1000,
                           "price_max_fen": 3000},
           ["melon_seeds", "jujube_small", "jujube_linze"]),
    Golden("certification", {"certification": ORGANIC},
           ["goji_zhongning", "millet", "honey", "kiwi"]),
    Golden("text and certification", {"text": "枸杞", "certification": ORGANIC},
           ["goji_zhongning"]),
    Golden("poverty counties", {"poverty_counties_only": True},
           ["goji_jingyuan", "melon_seeds", "jujube_small", "lamb", "millet"]),
    Golden("poor share", {"min_poor_share_bp": 4000},
           ["goji_jingyuan", "melon_seeds", "millet"]),
    Golden("sale mode", {"sale_mode": "presale"}, ["goji_zhongning", "kiwi"]),
    Golden("storage class", {"storage_class": "chilled"}, ["apple", "kiwi"]),
    Golden("category", {"category": "dried_fruit", "region_code": "620421"},
           ["goji_jingyuan", "jujube_small"]),
    Golden("min available", {"min_available": 2500}, ["flour", "millet", "apple"]),
    Golden("poverty and text", {"text": "会宁", "poverty_counties_only": True,
                                "min_poor_share_bp": 6000}, ["melon_seeds"]),
    # geo
    Golden("within 100 km of Beijing", {"near": BEIJING, "max_distance_km": 100,
                                        "sort": "distance"}, ["apple", "honey"], ordered=True),
    Golden("distance sort", {"near": BEIJING, "sort": "distance"},
           ["apple", "honey", "lamb", "goji_zhongning", "goji_jingyuan", "jujube_small",
            "melon_seeds", "millet", "flour", "jujube_linze", "douban", "kiwi"], ordered=True),
    # sorts
    Golden("newest", {"sort": "newest", "region_code": "640000"}, ["lamb", "goji_zhongning"],
           ordered=True),
    Golden("price desc", {"text": "枸杞", "sort": "price_desc"}, ["goji_zhongning",
                                                                 "goji_jingyuan"], ordered=True),
    Golden("poor share, nulls last", {"sort": "poor_share", "text": "甘肃"},
           ["melon_seeds", "millet", "goji_jingyuan", "jujube_small", "flour", "jujube_linze"],
           ordered=True),
]  # fmt: skip


Backend = PostgresSearch | ElasticsearchSearch


@pytest.fixture(scope="module")
def search_url() -> Iterator[str]:
    """One osmem-server (standing in for Elasticsearch) for the module's tests."""
    with search_server() as server:
        yield server.url


@pytest.fixture(params=["postgres", "postgres_reader", "elasticsearch"])
async def backend(
    request: pytest.FixtureRequest,
    db_url: str,
    engine: AsyncEngine,
    connection: AsyncConnection,
    search_url: str,
) -> AsyncIterator[Backend]:
    """Each backend with DOCUMENTS indexed: PostgreSQL bound to the test's rolled-back
    transaction; PostgreSQL as the served app reads it (committed, searched on the app's
    asyncpg read pool), emptied afterwards; Elasticsearch in indices of its own (a fresh
    prefix), dropped afterwards."""
    if request.param == "postgres":
        search = PostgresSearch(engine, connection=connection)
        await search.index(DOCUMENTS, connection=connection)
        yield search
        return
    if request.param == "postgres_reader":
        pool = await create_read_pool(db_url, 2)
        search = PostgresSearch(engine, reader=pool)
        try:
            await search.index(DOCUMENTS)
            yield search
        finally:
            await pool.close()
            async with engine.begin() as conn:  # what index() committed (documents cascade)
                await conn.execute(text("DELETE FROM search_listing"))
                await conn.execute(text("DELETE FROM search_vocabulary"))
        return
    elastic = ElasticsearchSearch(
        make_client(search_url, opensearch_compat=True), index_prefix=f"t{uuid.uuid4().hex[:12]}"
    )
    try:
        assert await elastic.ensure_index() is True
        assert await elastic.index(DOCUMENTS) == []
        await elastic.refresh()
        yield elastic
    finally:
        await elastic.drop()
        await elastic.close()


async def write(
    backend: Backend,
    documents: Sequence[ListingDocument] = (),
    deletions: Sequence[Deletion] = (),
) -> None:
    """Index and delete through either backend (PostgreSQL: in the test's transaction;
    Elasticsearch: refreshed, so that the next search sees it); nothing may fail."""
    failures = []
    if documents:
        failures += await backend.index(documents)
    if deletions:
        failures += await backend.delete(deletions)
    if isinstance(backend, ElasticsearchSearch):
        await backend.refresh()
    assert failures == []


async def stored(backend: Backend, listing_id: str) -> tuple[int, str] | None:
    """(version, the stored document's title) of an indexed listing, None if not indexed."""
    if isinstance(backend, ElasticsearchSearch):
        version = (await backend.versions([listing_id])).get(listing_id)
        if version is None:
            return None
        got = await backend.client.get(index=backend.alias, id=listing_id)
        return version, got["_source"]["document"]["title_zh"]
    async with backend.engine.connect() as own:
        row = (
            await (backend.connection or own).execute(
                text(
                    "SELECT l.version, d.document->>'title_zh' FROM search_listing l "
                    "JOIN search_document d USING (id) WHERE l.id = :i"
                ),
                {"i": listing_id},
            )
        ).one_or_none()
    return None if row is None else (row[0], row[1])


def _by_id(listing_id: str) -> ListingDocument:
    return next(d for d in DOCUMENTS if d.id == listing_id)


def _poor_share(listing_id: str) -> int:
    share = _by_id(listing_id).poor_share_bp
    return -1 if share is None else share


def ids(result: Result) -> list[str]:
    return [h.id for h in result.hits]


def test_the_golden_table_is_large_enough():
    assert len(GOLDEN) >= 40
    assert len({g.name for g in GOLDEN}) == len(GOLDEN)
    known = set(ALL)
    assert all(set(g.expected) <= known for g in GOLDEN)


async def test_the_backends_implement_the_interface(engine, search_url):
    assert isinstance(PostgresSearch(engine), ListingIndex)
    elastic = ElasticsearchSearch(make_client(search_url, opensearch_compat=True))
    assert isinstance(elastic, ListingIndex)
    await elastic.close()


@pytest.mark.parametrize("case", GOLDEN, ids=[g.name for g in GOLDEN])
async def test_golden(backend, case: Golden):
    result = await backend.search(Query(**case.query, limit=MAX_LIMIT))
    if case.ordered:
        assert ids(result) == case.expected
    else:
        assert sorted(ids(result)) == sorted(case.expected)
    assert result.total == len(case.expected)


def reference_scores(text: str) -> dict[str, float]:
    """Each golden document's relevance for `text` as the backends must compute it: the
    query's typos corrected against every ASCII term indexed (what both vocabularies hold),
    then per group the boosts of the weights holding one of its terms, added up."""
    vocabulary = sorted(
        {t for d in DOCUMENTS for t, _ in document_terms(d) if t.isascii() and t.isalpha()}
    )
    analysed = analyse_query(text)
    analysed = analysed.with_typos(vocabulary) if analysed.fuzzy_words() else analysed
    scores: dict[str, float] = {}
    for doc in DOCUMENTS:
        weighted = set(document_terms(doc))
        scores[doc.id] = float(
            sum(
                boost
                for group in analysed.groups
                for weight, boost in WEIGHT_BOOSTS.items()
                if any((term, weight) in weighted for term in group.terms)
            )
        )
    return scores


RELEVANCE = [g for g in GOLDEN if g.query.get("text") and "sort" not in g.query and g.expected]


@pytest.mark.parametrize("case", RELEVANCE, ids=[g.name for g in RELEVANCE])
async def test_relevance_is_the_same_on_every_backend(backend, case: Golden):
    """Page one is the same on both backends: ordered by the shared score, then id."""
    scores = reference_scores(case.query["text"])
    result = await backend.search(Query(**case.query, limit=MAX_LIMIT))
    expected = sorted(case.expected, key=lambda i: (-scores[i], i))
    assert [(h.id, h.score) for h in result.hits] == [(i, scores[i]) for i in expected]


@pytest.mark.parametrize(
    ("sort", "extra", "expected"),
    [
        ("price_asc", {}, sorted(ALL, key=lambda i: _by_id(i).unit_price_fen)),
        ("price_desc", {}, sorted(ALL, key=lambda i: -_by_id(i).unit_price_fen)),
        ("newest", {}, sorted(ALL, key=lambda i: _by_id(i).published_at, reverse=True)),
        ("relevance", {}, sorted(ALL, key=lambda i: _by_id(i).published_at, reverse=True)),
        (
            "poor_share",
            {},
            sorted(ALL, key=lambda i: (-_poor_share(i), i)),
        ),
        ("distance", {"near": BEIJING}, None),
        ("relevance", {"text": "甘肃"}, None),
        ("price_asc", {"text": "一级"}, ["apple", "douban", "jujube_small"]),
    ],
)
async def test_cursor_pagination_walks_every_page(backend, sort, extra, expected):
    whole = await backend.search(Query(sort=sort, limit=MAX_LIMIT, **extra))
    assert whole.next_cursor is None
    if expected is not None:
        assert ids(whole) == expected
    walked: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await backend.search(Query(sort=sort, limit=2, cursor=cursor, **extra))
        assert page.total == whole.total
        walked += ids(page)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(page.hits) == 2
    assert walked == ids(whole)
    assert pages == (whole.total + 1) // 2


async def test_facets_over_the_filtered_set(backend):
    result = await backend.search(Query(region_code="620000", facets=True))
    assert result.total == 6
    assert result.facets == {
        "category": [
            FacetCount("dried_fruit", 3),
            FacetCount("grain", 2),
            FacetCount("nuts_seeds", 1),
        ],
        "province": [FacetCount("620000", 6)],
        "certification": [FacetCount(GI, 2), FacetCount(GREEN, 2), FacetCount(ORGANIC, 1)],
        "storage_class": [FacetCount("ambient", 6)],
        "price": [
            FacetCount("0-1000", 1),
            FacetCount("1000-3000", 3),
            FacetCount("3000-6000", 1),
            FacetCount("6000-10000", 1),
            FacetCount("10000-", 0),
        ],
    }
    goji = await backend.search(Query(text="gouqi", facets=True, limit=1))
    assert goji.total == 2 and len(goji.hits) == 1
    assert goji.facets["province"] == [FacetCount("620000", 1), FacetCount("640000", 1)]
    assert goji.facets["certification"] == [
        FacetCount(GI, 2),
        FacetCount(GREEN, 1),
        FacetCount(ORGANIC, 1),
    ]
    assert (await backend.search(Query(text="枸杞"))).facets == {}


async def test_distance_and_highlight_in_hits(backend):
    result = await backend.search(Query(text="苹果", near=BEIJING))
    (hit,) = result.hits
    assert hit.id == "apple"
    assert hit.distance_km == pytest.approx(38.3, abs=0.1)
    assert hit.highlight == "昌平<em>苹果</em> 富士 一级"
    assert hit.score > 0
    assert hit.document == _by_id("apple")  # as indexed, to show without a lookup

    by_pinyin = await backend.search(Query(text="gouqi", sort="newest"))
    assert [h.highlight for h in by_pinyin.hits] == [
        "宁夏中宁<em>枸杞</em> 头茬",
        "靖远<em>枸杞</em> 特级干果 500g",
    ]
    both = await backend.search(Query(text="靖远 红枣"))
    assert both.hits[0].highlight == "<em>靖远</em>小口<em>大枣</em> 一级"
    assert (await backend.search(Query(region_code="620421"))).hits[0].highlight is None
    assert (await backend.search(Query(region_code="620421"))).hits[0].distance_km is None


async def test_relevance_prefers_title_matches(backend):
    # 宁夏 is in one title and in the other document's province name only; the other is newer
    result = await backend.search(Query(text="宁夏"))
    assert ids(result) == ["goji_zhongning", "lamb"]
    assert result.hits[0].score > result.hits[1].score > 0
    # a pinyin query ranks through its synonyms' terms too
    scores = {h.id: h.score for h in (await backend.search(Query(text="gouqi"))).hits}
    assert scores["goji_jingyuan"] > 0 and scores["goji_zhongning"] > 0


async def test_limit_is_capped_and_cursors_are_checked(backend):
    assert len((await backend.search(Query(limit=1000))).hits) == len(DOCUMENTS)
    with pytest.raises(ValueError, match="cursor"):
        await backend.search(Query(sort="newest", cursor="not-a-cursor"))
    other = encode_cursor("price_asc", [100], "x")
    with pytest.raises(ValueError, match="cursor"):
        await backend.search(Query(sort="newest", cursor=other))
    assert decode_cursor(other, "price_asc") == ([100], "x")
    # a key of the wrong type never reaches the query (PostgreSQL writes it in as a constant)
    for sort, keys in (
        ("price_asc", [1.5]),
        ("price_asc", ["100; DROP TABLE search_listing"]),
        ("poor_share", [True]),
        ("relevance", ["1"]),
        ("distance", [float("inf")]),
        ("newest", ["yesterday"]),
        ("newest", ["2026-11-30T10:00:00"]),  # no time zone
        ("price_desc", [100, 200]),
        ("price_asc", [2**70]),  # past bigint
        ("relevance", [10**400]),  # past a float
    ):
        with pytest.raises(ValueError, match="cursor"):
            await backend.search(
                Query(sort=sort, near=BEIJING, cursor=encode_cursor(sort, keys, "x"))
            )
    with pytest.raises(ValueError, match="cursor"):
        await backend.search(
            Query(sort="price_asc", cursor=encode_cursor("price_asc", [1], "x\x00"))
        )
    with pytest.raises(ValueError, match="near"):
        await backend.search(Query(sort="distance"))
    # a time zone Python accepts and PostgreSQL does not (beyond ±15:59) is read in UTC
    newest = await backend.search(Query(sort="newest", limit=2))
    assert newest.next_cursor is not None
    [at], after = decode_cursor(newest.next_cursor, "newest")
    far = at.astimezone(dt.timezone(dt.timedelta(hours=20))).isoformat()
    rest = await backend.search(
        Query(sort="newest", limit=100, cursor=encode_cursor("newest", [far], after))
    )
    assert ids(rest) == ids(await backend.search(Query(sort="newest", limit=100)))[2:]


async def test_a_word_too_long_to_be_a_word_is_left_out(backend):
    """㌖ is キロメートル under NFKC: 120 of them would be one term of 2,160 bytes, past
    PostgreSQL's limit per lexeme; such a word is not indexed (nor searched for)."""
    goji = _by_id("goji_jingyuan")
    await write(backend, [replace(goji, version=9, title_zh="靖远枸杞 " + "㌖" * 120)])
    assert await stored(backend, goji.id) == (9, "靖远枸杞 " + "㌖" * 120)
    assert ids(await backend.search(Query(text="枸杞 " + "㌖" * 120))) == ids(
        await backend.search(Query(text="枸杞"))
    )


async def test_listings_published_in_the_same_millisecond_sort_by_id(backend):
    goji = _by_id("goji_jingyuan")
    at = dt.datetime(2026, 12, 1, 10, 0, 0, 100, tzinfo=dt.UTC)
    await write(
        backend,
        [
            replace(
                goji,
                id="zz_later",
                title_zh="同毫秒 枸杞",
                published_at=at.replace(microsecond=900),
            ),
            replace(goji, id="aa_earlier", title_zh="同毫秒 枸杞", published_at=at),
        ],
    )
    found = await backend.search(Query(text="同毫秒", sort="newest"))
    assert ids(found) == ["aa_earlier", "zz_later"]


async def test_a_misspelt_word_gone_from_every_listing_is_corrected_again(backend):
    """A listing titled with a misspelling puts it into the vocabulary, which only grows: while
    the listing is there the word is found as typed; once it is gone, the word is corrected
    again instead of finding nothing for good."""
    flour = _by_id("flour")
    typo = replace(flour, id="typo_title", version=1, title_en="Wolfbery dried")
    await write(backend, [typo])
    assert ids(await backend.search(Query(text="wolfbery"))) == ["typo_title"]
    await write(backend, deletions=[Deletion("typo_title", 1)])
    assert sorted(ids(await backend.search(Query(text="wolfbery")))) == sorted(GOJI)


async def test_an_older_version_never_overwrites(backend):
    goji = _by_id("goji_jingyuan")
    await write(backend, [replace(goji, version=3, title_zh="靖远枸杞 新货")])
    await write(backend, [replace(goji, version=2, title_zh="靖远枸杞 旧货")])
    assert await stored(backend, goji.id) == (3, "靖远枸杞 新货")
    assert ids(await backend.search(Query(text="新货"))) == [goji.id]
    assert ids(await backend.search(Query(text="旧货"))) == []
    # the same version is written again (a reindex after the analysis changed)
    await write(backend, [replace(goji, version=3, title_zh="靖远枸杞 新货 重写")])
    assert await stored(backend, goji.id) == (3, "靖远枸杞 新货 重写")
    assert ids(await backend.search(Query(text="重写"))) == [goji.id]

    # a delete of an older version keeps the newer document; the current version deletes
    await write(backend, deletions=[Deletion(goji.id, 2)])
    assert ids(await backend.search(Query(text="新货"))) == [goji.id]
    await write(backend, deletions=[Deletion(goji.id, 3)])
    assert ids(await backend.search(Query(text="新货"))) == []
    assert sorted(ids(await backend.search(Query(text="枸杞")))) == ["goji_zhongning"]
    assert await stored(backend, goji.id) is None
    # deleting what is not indexed is no failure
    await write(backend, deletions=[Deletion("never_indexed", 1)])


async def test_a_batch_keeps_the_newest_of_repeats(backend):
    honey = _by_id("honey")
    await write(
        backend, [replace(honey, version=5, title_en="Miyun raw honey"), replace(honey, version=4)]
    )
    assert await stored(backend, "honey") == (5, honey.title_zh)
    # a typo of a word only the English title carries is corrected from the index's terms
    assert ids(await backend.search(Query(text="miyn"))) == ["honey"]
    assert ids(await backend.search(Query(text="Miyun raw"))) == ["honey"]


async def test_postgres_fills_the_vocabulary(engine, connection):
    backend = PostgresSearch(engine, connection=connection)
    honey = _by_id("honey")
    await backend.index([*DOCUMENTS, replace(honey, version=5, title_en="Miyun raw honey")])
    vocabulary = set(
        (await connection.execute(text("SELECT term FROM search_vocabulary"))).scalars()
    )
    assert {"gouqi", "gq", "miyun", "raw", "honey", "fengmi"} <= vocabulary
    assert not any(not t.isascii() or t.isdigit() for t in vocabulary)


async def test_postgres_ranks_counts_and_facets_the_newest_matches(engine, connection):
    """Sorted by relevance, the window (the newest rank_window matches) is ranked, and the
    count and the facets stop at count_limit of the newest matches, read in the same pass;
    other sorts count and facet count_limit of the matches in a second statement."""
    await PostgresSearch(engine, connection=connection).index(DOCUMENTS)

    def capped(rank_window: int, count_limit: int) -> PostgresSearch:
        return PostgresSearch(
            engine, connection=connection, rank_window=rank_window, count_limit=count_limit
        )

    # goji_zhongning (Ningxia) is newer than goji_jingyuan (Gansu)
    one = await capped(1, 1).search(Query(text="gouqi", facets=True))
    assert (ids(one), one.total, one.total_exact) == (["goji_zhongning"], 1, False)
    assert one.facets["province"] == [FacetCount("640000", 1)]
    assert sum(f.count for f in one.facets["price"]) == 1
    wider = await capped(2, 1).search(Query(text="gouqi", facets=True))
    assert set(ids(wider)) == {"goji_zhongning", "goji_jingyuan"}
    assert (wider.total, wider.total_exact) == (1, False)
    assert wider.facets["province"] == [FacetCount("640000", 1)]
    exact = await capped(2, 2).search(Query(text="gouqi", facets=True))
    assert (exact.total, exact.total_exact) == (2, True)
    assert exact.facets["province"] == [FacetCount("620000", 1), FacetCount("640000", 1)]
    assert (await capped(2, 2).search(Query(text="gouqi"))).facets == {}
    by_price = await capped(1, 1).search(Query(text="gouqi", sort="price_asc", facets=True))
    assert (len(by_price.hits), by_price.total, by_price.total_exact) == (2, 1, False)
    assert sum(f.count for f in by_price.facets["storage_class"]) == 1
    nothing = await capped(1, 1).search(Query(text="榴莲", facets=True))
    assert (nothing.hits, nothing.total, nothing.total_exact) == ([], 0, True)
    assert nothing.facets["category"] == [] and {f.count for f in nothing.facets["price"]} == {0}


@pytest.mark.parametrize(
    "value", ["", "枸杞", "it's", "back\\slash", "$", "$q0$", "a$q0", "$q0$q1$ $q2", "$$"]
)
async def test_postgres_constants_come_back_as_written(connection, value):
    """The analysed tsquery goes into the statement as a dollar-quoted constant (so that every
    statement is planned for its query): whatever the text, it reads back unchanged."""
    assert await connection.scalar(text(f"SELECT {sql_constant(value)}")) == value


async def test_index_writes_in_the_callers_transaction(engine, clean_db):
    search = PostgresSearch(engine)
    async with engine.connect() as conn:
        tx = await conn.begin()
        await search.index(DOCUMENTS[:2], connection=conn)
        assert len((await PostgresSearch(engine, connection=conn).search(Query())).hits) == 2
        assert (await search.search(Query())).total == 0  # not visible before commit
        await tx.rollback()
    assert (await search.search(Query())).total == 0
    await search.index(DOCUMENTS[:3])  # on the engine: committed
    assert ids(await search.search(Query(text="枸杞", sort="newest"))) == [
        "goji_zhongning",
        "goji_jingyuan",
    ]
    assert await search.suggest("gouq") == ["宁夏中宁枸杞 头茬", "靖远枸杞 特级干果 500g"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("枸", ["宁夏中宁枸杞 头茬", "靖远枸杞 特级干果 500g"]),
        ("靖远", ["靖远小口大枣 一级", "靖远枸杞 特级干果 500g"]),
        ("gou", ["宁夏中宁枸杞 头茬", "靖远枸杞 特级干果 500g"]),
        ("gq", ["宁夏中宁枸杞 头茬", "靖远枸杞 特级干果 500g"]),
        ("jingy", ["靖远小口大枣 一级", "靖远枸杞 特级干果 500g"]),
        ("hesh", ["景泰和尚头全麦面粉 5kg"]),
        ("一级", ["郫县豆瓣 一级 500g", "昌平苹果 富士 一级", "靖远小口大枣 一级"]),
        ("甘肃", []),  # place names are not titles
        ("", []),
    ],
)
async def test_suggest(backend, prefix, expected):
    assert await backend.suggest(prefix) == expected


async def test_suggest_limit_and_distinct_titles(backend):
    await write(
        backend,
        [
            replace(
                _by_id("goji_jingyuan"),
                id="goji_copy",
                published_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
            )
        ],
    )
    assert await backend.suggest("枸杞", limit=1) == ["靖远枸杞 特级干果 500g"]
    assert await backend.suggest("枸杞") == ["靖远枸杞 特级干果 500g", "宁夏中宁枸杞 头茬"]


def _golden_doc_ids() -> set[str]:
    return {i for g in GOLDEN for i in g.expected}


def test_every_document_is_found_by_some_golden_case():
    assert _golden_doc_ids() == set(ALL)


def test_documents_read_back_as_they_were_indexed():
    """Through JSON text (as both backends store them) every document comes back equal, a
    real frozen ListingDocument; a stored document with a field missing or unknown is
    refused by name rather than read with a hole in it."""
    for doc in DOCUMENTS:
        back = document_from_json(json.loads(json.dumps(document_to_json(doc), default=str)))
        assert back == doc and hash(back) == hash(doc) and type(back) is ListingDocument
        assert replace(back, version=9).version == 9
        with pytest.raises(dataclasses.FrozenInstanceError):
            back.version = 2  # type: ignore[misc]
    stored = json.loads(json.dumps(document_to_json(DOCUMENTS[0]), default=str))
    with pytest.raises(TypeError, match="sale_mode"):
        document_from_json({k: v for k, v in stored.items() if k != "sale_mode"})
    with pytest.raises(TypeError, match="colour"):
        document_from_json({**stored, "colour": "red"})
