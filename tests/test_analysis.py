"""The shared Chinese analysis: what a title is indexed with and which queries find it."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from search import analysis
from search.analysis import (
    AnalysedQuery,
    TermGroup,
    analyse_query,
    edit_distance,
    index_terms,
    max_edits,
    normalise,
    parse_synonyms,
    pinyin,
    query_terms,
    stem,
    trigram_threshold,
    trigrams,
    typo_candidates,
)

TITLES = {
    "goji_jingyuan": "靖远枸杞 特级干果 500g",
    "goji_zhongning": "宁夏中宁枸杞 头茬",
    "flour": "景泰和尚头全麦面粉 5kg",
    "melon_seeds": "会宁黑瓜子 原味",
    "jujube_small": "靖远小口大枣 一级",
    "jujube_red": "靖远红枣 骏枣 1kg",
    "lamb": "盐池滩羊肉 羊排 2kg",
    "millet": "会宁小米 黄小米",
}
INDEX = {key: set(index_terms(title)) for key, title in TITLES.items()}
# The ASCII terms of the index, as a backend's vocabulary table holds them.
VOCABULARY = sorted({t for terms in INDEX.values() for t in terms if re.fullmatch("[a-z0-9]+", t)})

GOJI = {"goji_jingyuan", "goji_zhongning"}
JUJUBE = {"jujube_small", "jujube_red"}


def matches(query: AnalysedQuery, terms: set[str]) -> bool:
    return not query.empty and all(any(t in terms for t in g.terms) for g in query.groups)


def found(text: str, *, vocabulary: list[str] | None = None) -> set[str]:
    query = analyse_query(text)
    if vocabulary is not None:
        query = query.with_typos(vocabulary)
    return {key for key, terms in INDEX.items() if matches(query, terms)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Chinese words and phrases
        ("枸杞", GOJI),
        ("枸杞子", GOJI),
        ("红枸杞", GOJI),
        ("宁夏枸杞", {"goji_zhongning"}),
        ("宁夏的枸杞", {"goji_zhongning"}),
        ("中宁枸杞", {"goji_zhongning"}),
        ("靖远 红枣", JUJUBE),
        ("靖远红枣", JUJUBE),
        ("大枣", JUJUBE),
        ("红枣", JUJUBE),
        ("靖远", {"goji_jingyuan", "jujube_small", "jujube_red"}),
        ("会宁", {"melon_seeds", "millet"}),
        ("特级干果", {"goji_jingyuan"}),
        ("全麦面粉", {"flour"}),
        ("面粉", {"flour"}),
        ("和尚头", {"flour"}),
        ("和尚头面粉", {"flour"}),
        ("黑瓜子", {"melon_seeds"}),
        ("瓜子", {"melon_seeds"}),
        ("羊肉", {"lamb"}),
        ("滩羊", {"lamb"}),
        ("羊排", {"lamb"}),
        ("小米", {"millet"}),
        ("黄小米", {"millet"}),
        ("头茬", {"goji_zhongning"}),
        ("小米 枸杞", set()),
        ("荞麦", set()),
        # one character
        ("枣", JUJUBE),
        ("米", {"millet"}),
        ("粉", {"flour"}),
        ("杞", GOJI),
        # pinyin, full and initials
        ("gouqi", GOJI),
        ("GouQi", GOJI),
        ("gǒuqǐ", GOJI),
        ("gq", GOJI),
        ("jingyuan", {"goji_jingyuan", "jujube_small", "jujube_red"}),
        ("jy gq", {"goji_jingyuan"}),
        ("zhongning", {"goji_zhongning"}),
        ("zn", {"goji_zhongning"}),
        ("heshangtou", {"flour"}),
        ("hst", {"flour"}),
        ("hongzao", JUJUBE),
        ("dazao", JUJUBE),
        ("xiaomi", {"millet"}),
        ("guazi", {"melon_seeds"}),
        ("mianfen", {"flour"}),
        # pinyin only matches whole words and whole-word initials
        ("g", set()),
        ("gou", set()),
        ("jygq", set()),
        ("gouqijingyuan", set()),
        # English, singular and plural, and synonyms
        ("wolfberry", GOJI),
        ("Wolfberries", GOJI),
        ("goji", GOJI),
        ("goji berries", GOJI),
        ("medlar", GOJI),
        ("jujube", JUJUBE),
        ("jujubes", JUJUBE),
        ("red dates", JUJUBE),
        ("melon seed", {"melon_seeds"}),
        ("melon seeds", {"melon_seeds"}),
        ("tan sheep", {"lamb"}),
        ("mutton", {"lamb"}),
        ("millet", {"millet"}),
        ("wolfberry and jujube", set()),
        ("buckwheat", set()),
        # full-width input
        ("ｇｏｕｑｉ", GOJI),
        ("ＧＯＪＩ", GOJI),
        ("枸杞　５００ｇ", {"goji_jingyuan"}),
        # numbers and units
        ("500g", {"goji_jingyuan"}),
        ("5kg", {"flour"}),
        ("kg", {"flour", "jujube_red", "lamb"}),
        ("2kg 羊排", {"lamb"}),
    ],
)
def test_query_finds_exactly(text: str, expected: set[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "unwanted"),
    [("小米", GOJI), ("面粉", {"lamb"}), ("羊肉", {"flour"}), ("枸杞", {"millet"})],
)
def test_unrelated_products_are_not_found(text: str, unwanted: set[str]) -> None:
    assert not found(text) & unwanted


def test_normalise_folds_width_case_and_whitespace() -> None:
    assert normalise("ＡＢＣ  ｇｏｕｑｉ\u3000枸杞\n５００Ｇ") == "abc gouqi 枸杞 500g"
    assert normalise("  Straße ") == "strasse"
    assert normalise("") == ""
    assert index_terms("ＡＢＣ") == ["abc"]
    assert index_terms("ｇｏｕｑｉ") == index_terms("gouqi") == ["gouqi"]


def test_title_terms_have_words_bigrams_characters_and_pinyin() -> None:
    terms = index_terms("靖远枸杞 特级干果 500g")
    for term in ["靖远", "枸杞", "特级", "干果", "远枸", "级干", "靖", "杞"]:
        assert term in terms
    for term in ["jingyuan", "jy", "gouqi", "gq", "teji", "tj", "ganguo", "gg", "500g", "500"]:
        assert term in terms
    assert len(terms) == len(set(terms))
    assert all(re.fullmatch(r"[^\W_]+", t) for t in terms)


def test_long_words_index_their_inner_words_and_synonym_members() -> None:
    terms = index_terms("景泰和尚头全麦面粉")
    assert {"和尚头", "和尚", "heshangtou", "hst", "heshang", "全麦", "quanmai"} <= set(terms)
    assert "黑瓜子" in index_terms("会宁黑瓜子")
    assert "滩羊肉" in index_terms("盐池滩羊肉")


def test_place_names_segment_as_words() -> None:
    terms = index_terms("宁夏回族自治区 中卫市 中宁县")
    assert {"宁夏", "ningxia", "nx", "中宁", "zhongning", "zn"} <= set(terms)
    assert analyse_query("宁夏中宁枸杞").as_lists()[:2] == [["宁夏"], ["中宁"]]


def test_latin_words_are_folded_and_stemmed() -> None:
    terms = index_terms("Goji Berries (Wolfberries), melon seeds; Crème brûlée")
    assert {"goji", "berry", "wolfberry", "melon", "seed", "creme", "brulee"} <= set(terms)
    assert {"gojiberry", "melonseed"} <= set(terms)
    assert "berries" not in terms


def test_english_stopwords_are_neither_indexed_nor_required() -> None:
    assert "and" not in index_terms("goji and jujube")
    assert len(analyse_query("goji and jujube").groups) == 2
    assert analyse_query("the").as_lists() == [["the"]]


def test_digits_and_units() -> None:
    terms = index_terms("2024年新货 5kg")
    assert {"2024", "年", "新货", "5kg", "5", "kg"} <= set(terms)
    assert "k" not in terms and "g" not in index_terms("500g")
    assert query_terms("5kg") == [["5kg"]]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("berries", "berry"),
        ("wolfberries", "wolfberry"),
        ("jujubes", "jujube"),
        ("dates", "date"),
        ("apples", "apple"),
        ("boxes", "box"),
        ("peaches", "peach"),
        ("dishes", "dish"),
        ("tomatoes", "tomato"),
        ("shoes", "shoe"),
        ("pies", "pie"),
        ("oats", "oat"),
        ("seeds", "seed"),
        ("glass", "glass"),
        ("glasses", "glass"),
        ("hummus", "hummus"),
        ("raisin", "raisin"),
        ("gouqi", "gouqi"),
        ("gas", "gas"),
        ("500s", "500s"),
        ("мёды", "мёды"),
    ],
)
def test_stem(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_pinyin_uses_phrase_readings() -> None:
    assert pinyin("枸杞") == ("gouqi", "gq")
    assert pinyin("和尚头") == ("heshangtou", "hst")
    assert pinyin("银行") == ("yinhang", "yh")
    assert pinyin("重庆") == ("chongqing", "cq")
    assert pinyin("绿豆") == ("lvdou", "ld")
    assert pinyin("头茬") == ("toucha", "tc")


def test_query_groups_are_an_and_of_ors() -> None:
    groups = query_terms("靖远 红枣")
    assert groups[0] == ["靖远"]
    assert {"红枣", "大枣", "jujube", "hongzao"} <= set(groups[1])
    assert len(query_terms("枸杞 红枣")) == 2
    goji = query_terms("枸杞")
    assert len(goji) == 1 and {"枸杞", "枸杞子", "wolfberry", "goji", "gouqi"} <= set(goji[0])
    # a long word that is no synonym requires each of its bigrams
    assert query_terms("特级干果") == [["特级"], ["干果"]]
    assert query_terms("小口大枣")[-1][0] == "大枣"
    assert query_terms("") == [] and query_terms(" ，。! ") == []


def test_repeated_words_give_one_group() -> None:
    assert len(analyse_query("枸杞 goji 枸杞子 wolfberries").groups) == 1


def test_region_words_are_required_and_can_be_dropped() -> None:
    query = analyse_query("宁夏枸杞")
    assert [g.region for g in query.groups] == [True, False]
    assert found("宁夏枸杞") == {"goji_zhongning"}
    relaxed = query.without_regions()
    assert {k for k, terms in INDEX.items() if matches(relaxed, terms)} == GOJI
    # a document carrying its place names is found by them
    assert matches(query, set(index_terms("特级枸杞 头茬 宁夏回族自治区 中卫市 中宁县")))
    # a query of nothing but place names keeps them
    assert analyse_query("靖远").without_regions() == analyse_query("靖远")


def test_tsquery_text() -> None:
    query = AnalysedQuery((TermGroup(("靖远",)), TermGroup(("红枣", "jujube"))))
    assert query.tsquery() == "'靖远' & ('红枣' | 'jujube')"
    assert AnalysedQuery((TermGroup(("it's",)),)).tsquery() == "'it''s'"
    assert analyse_query("").tsquery() == ""


def test_es_query_has_the_same_groups() -> None:
    assert analyse_query("").es_query("terms") == {"match_all": {}}
    for text in ["宁夏枸杞", "靖远 红枣", "gq", "melon seeds", "500g"]:
        query = analyse_query(text)
        clauses = query.es_query("terms")["bool"]["filter"]
        assert [c["terms"]["terms"] for c in clauses] == query.as_lists()
        for terms in INDEX.values():
            by_es = all(any(t in terms for t in c["terms"]["terms"]) for c in clauses)
            assert by_es == matches(query, terms)


# --- typos -------------------------------------------------------------------------------


def test_max_edits() -> None:
    assert [max_edits("x" * n) for n in range(1, 11)] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert analysis.ES_FUZZINESS == "AUTO:4,8"


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("gouqi", "gouqi", 0),
        ("gouqu", "gouqi", 1),
        ("gouiq", "gouqi", 1),
        ("wolfbery", "wolfberry", 1),
        ("wlfberri", "wolfberry", 2),
        ("", "abc", 3),
        ("jujube", "jojoba", 3),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance
    assert edit_distance(a, b, limit=1) == min(distance, 2)


def test_typo_candidates() -> None:
    assert typo_candidates("gouqu", VOCABULARY) == ["gouqi"]
    assert typo_candidates("gouiq", VOCABULARY) == ["gouqi"]
    assert typo_candidates("wolfbery", ["wolfberry", "wolf", "berry"]) == ["wolfberry"]
    assert typo_candidates("wlfberri", ["wolfberry"]) == ["wolfberry"]
    # a known word is not corrected
    assert typo_candidates("gouqi", VOCABULARY) == ["gouqi"]
    # short words and initials are never corrected
    assert typo_candidates("gx", VOCABULARY) == []
    assert typo_candidates("gqz", ["gq"]) == []
    # only the nearest candidates, alphabetically
    assert typo_candidates("abcdefgh", ["abcdefgx", "abcdefxx", "abcdefga"]) == [
        "abcdefga",
        "abcdefgx",
    ]
    assert typo_candidates("hongzoo", ["hongzao", "hongzhao"]) == ["hongzao"]
    assert typo_candidates("枸杞", ["枸杞"]) == []
    assert typo_candidates("abcd", [f"abc{c}" for c in "efghijklmnop"], limit=3) == [
        "abce",
        "abcf",
        "abcg",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gouqu", GOJI),
        ("wolfbery", GOJI),
        ("Wolfberies", GOJI),
        ("jujub", JUJUBE),
        ("jingyaun", {"goji_jingyuan", "jujube_small", "jujube_red"}),
        ("heshangtuo", {"flour"}),
        ("milet", {"millet"}),
    ],
)
def test_typos_are_corrected_with_the_vocabulary(text: str, expected: set[str]) -> None:
    assert found(text) == set()
    assert analyse_query(text).fuzzy_words()
    assert found(text, vocabulary=VOCABULARY) == expected


def test_synonym_typos_need_no_vocabulary() -> None:
    assert found("wolfbery", vocabulary=[]) == GOJI


def test_known_words_are_not_corrected() -> None:
    # 小麦 (wheat) is one typo away from 小米 (millet) in pinyin
    assert "xiaomai" not in VOCABULARY
    assert found("xiaomai", vocabulary=[*VOCABULARY]) == {"millet"}
    wheat = analyse_query("xiaomai").with_typos([*VOCABULARY, "xiaomai"])
    assert wheat.as_lists() == [["xiaomai"]]
    assert not matches(wheat, INDEX["millet"])


def test_exact_synonyms_are_not_fuzzy() -> None:
    assert analyse_query("wolfberry").fuzzy_words() == []
    assert analyse_query("gouqi").fuzzy_words() == []
    assert analyse_query("wolfbery").fuzzy_words() == ["wolfbery"]
    assert analyse_query("gq 500g").fuzzy_words() == []


def test_at_most_four_words_of_a_query_are_looked_up_for_typos() -> None:
    """A dozen made-up words would each cost a scan of the vocabulary; the fifth and later
    match as typed, on both backends (the analysis decides)."""
    words = ["zhongguaa", "zhongguab", "zhongguac", "zhongguad", "zhongguae", "wolfbery"]
    analysed = analyse_query(" ".join(words))
    assert analysed.fuzzy_words() == words[:4]
    corrected = analysed.with_typos(["wolfberry"])
    assert ["wolfbery"] in corrected.as_lists()  # sixth: as typed, not corrected


def _pg_trgm_similarity(a: str, b: str) -> float:
    ta, tb = trigrams(a), trigrams(b)
    return len(ta & tb) / len(ta | tb)


def _random_typos(rng: random.Random, word: str, count: int, alphabet: str) -> str:
    letters = list(word)
    for _ in range(count):
        op, at = rng.choice("isdt"), rng.randrange(len(letters))
        if op == "i":
            letters.insert(at, rng.choice(alphabet))
        elif op == "s":
            letters[at] = rng.choice(alphabet)
        elif op == "d" and len(letters) > 1:
            del letters[at]
        elif op == "t" and at + 1 < len(letters):
            letters[at], letters[at + 1] = letters[at + 1], letters[at]
    return "".join(letters)


def test_trigram_threshold_never_loses_a_candidate() -> None:
    assert trigrams("abc") == {"  a", " ab", "abc", "bc "}
    assert trigram_threshold("gq") == 1.0
    assert 0 < trigram_threshold("wolfbery") < trigram_threshold("gouqi") < 1
    rng = random.Random(20261130)
    for _ in range(3000):
        alphabet = "abcdefghijklmnopqrstuvwxyz"[: rng.choice([2, 4, 26])]
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(4, 14)))
        k = max_edits(word)
        typo = _random_typos(rng, word, rng.randint(1, k), alphabet)
        if edit_distance(word, typo, k) <= k:
            assert _pg_trgm_similarity(word, typo) >= trigram_threshold(word), (word, typo)


# --- data and determinism ------------------------------------------------------------------


def test_shipped_synonym_table() -> None:
    table = analysis.synonyms()
    assert 15 <= len(table.expansions) <= 25
    assert table.expand(["枸杞子"]) == table.expand(["goji"]) == table.expand(["gouqi"])
    assert {"枸杞", "wolfberry", "goji", "medlar"} <= set(table.expand(["枸杞子"]))
    assert {"红枣", "大枣", "jujube"} <= set(table.expand(["大枣"]))
    assert table.expand(["面粉"]) == ()
    source = Path(analysis.__file__).with_name("synonyms.txt").read_text("utf-8")
    assert analysis.parse_synonyms(source) == table


def test_synonym_parsing() -> None:
    table = parse_synonyms("# comment\n\n红枣, 大枣 , Jujubes # trailing\n黑瓜子, melon seeds\n")
    assert table.expansions == (
        ("红枣", "大枣", "jujube", "hongzao", "dazao"),
        ("黑瓜子", "melonseed", "heiguazi"),
    )
    assert table.phrases == {("melon", "seed"): "melonseed"}
    with pytest.raises(ValueError, match="line 1"):
        parse_synonyms("枸杞 goji, wolfberry")
    with pytest.raises(ValueError, match="line 2"):
        parse_synonyms("枸杞\nthe, of")


def test_analysis_version_follows_the_synonym_table() -> None:
    version = analysis.analysis_version()
    assert version.startswith(analysis.ANALYSIS_VERSION + "-")
    assert version == analysis.analysis_version()


def test_region_names_come_from_the_gazetteer() -> None:
    names = analysis.region_names()
    assert {"宁夏", "甘肃", "白银", "靖远", "会宁", "景泰", "中宁", "盐池"} <= names
    assert analysis.region_short_name("宁夏回族自治区") == "宁夏"
    assert analysis.region_short_name("和县") == "和县"


def test_same_input_same_output() -> None:
    for title in TITLES.values():
        assert index_terms(title) == index_terms(title)
    assert analyse_query("宁夏枸杞 wolfberries") == analyse_query("宁夏枸杞 wolfberries")


def test_output_does_not_depend_on_the_hash_seed() -> None:
    script = (
        "import json, sys\n"
        "from search.analysis import index_terms, query_terms\n"
        "titles = json.loads(sys.argv[1])\n"
        "print(json.dumps([[index_terms(t), query_terms(t)] for t in titles]))\n"
    )
    titles = [*TITLES.values(), "goji berries 宁夏枸杞 melon seeds 靖远 红枣"]
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps(titles)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert json.loads(outputs.pop())[0][0] == index_terms(TITLES["goji_jingyuan"])


def test_a_started_process_has_the_dictionaries_loaded_and_beyond_the_collector() -> None:
    """After start-up (`freeze_startup_objects`, as `market serve` and `market worker` do),
    the first search's analysis loads nothing more, and a full collection has almost
    nothing to walk: the ~190,000 objects of the dictionaries are frozen with the rest."""
    script = (
        "import gc, json\n"
        "from market.app import freeze_startup_objects\n"
        "from search.analysis import analyse_query\n"
        "freeze_startup_objects()\n"
        "frozen = gc.get_freeze_count()\n"
        "analyse_query('gq 枸杞 宁夏 hongzao 靖远 红枣')\n"
        "gc.collect()\n"
        "print(json.dumps([frozen, len(gc.get_objects())]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    frozen, tracked = json.loads(result.stdout)
    assert frozen > 190_000  # the dictionaries are among the frozen start-up objects
    assert tracked < 5_000  # the first search loaded nothing the collector must walk
