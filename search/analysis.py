"""Chinese-first text analysis shared by every search backend, so that they agree on what matches.

Pure and deterministic; the segmenter, pinyin and synonym dictionaries load lazily, once.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import importlib.util
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

# Bump when the analysis changes in a way that needs a reindex (the synonym table is hashed in
# by analysis_version(), so editing it needs no bump).
ANALYSIS_VERSION = "1"

# A typed Latin or pinyin word of at least this many letters tolerates one typo, and two from
# TWO_TYPOS_LENGTH on; Elasticsearch spells the same rule fuzziness "AUTO:4,8".
ONE_TYPO_LENGTH = 4
TWO_TYPOS_LENGTH = 8
ES_FUZZINESS = f"AUTO:{ONE_TYPO_LENGTH},{TWO_TYPOS_LENGTH}"
# Typed words of one query looked up for typos: a buyer types two or three; a query of a dozen
# made-up 8-letter words would otherwise cost a vocabulary scan each (the rest match as typed)
MAX_FUZZY_WORDS = 4

# Latin words too common to be required by a query (and too common to be worth indexing).
LATIN_STOPWORDS = frozenset({"a", "an", "and", "the", "of", "for", "with", "in", "or", "to"})
# Single Chinese characters dropped from a query that has other words (宁夏的枸杞).
QUERY_STOP_CHARACTERS = frozenset("的之与及或和")

_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TOKEN = re.compile(rf"([{_HAN}]+)|((?:(?![{_HAN}])[^\W_])+)")
_HAS_HAN = re.compile(rf"[{_HAN}]")
_PARTS = re.compile(r"\d+|[^\W\d_]+")
_ASCII_LETTERS = re.compile(r"[a-z]+")
_ASCII_TERM = re.compile(r"[a-z0-9]+")
_NOT_ASCII_LETTER = re.compile(r"[^a-z]")

_REGION_SUFFIXES = (
    "维吾尔自治区",
    "壮族自治区",
    "回族自治区",
    "特别行政区",
    "自治区",
    "自治州",
    "自治县",
    "地区",
    "林区",
    "新区",
    "盟",
    "旗",
    "省",
    "市",
    "县",
    "区",
)

_T = TypeVar("_T")
# Re-entrant: loading the segmenter loads the synonyms and the region names.
_LOAD_LOCK = threading.RLock()


def _once(load: Callable[[], _T]) -> Callable[[], _T]:
    """Run a loader at most once, even when two threads ask at the same time."""
    cached = lru_cache(maxsize=1)(load)

    def get() -> _T:
        with _LOAD_LOCK:
            return cached()

    get.__doc__ = load.__doc__
    return get


# --- normalisation and words ---------------------------------------------------------------


def normalise(text: str) -> str:
    """NFKC with case folding (full-width ＡＢＣ → abc, ｇｏｕｑｉ → gouqi) and collapsed
    whitespace."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def fold_latin(word: str) -> str:
    """Drop accents and tone marks (gǒuqǐ → gouqi); ü becomes v, as pypinyin writes it (lü → lv)."""
    decomposed = unicodedata.normalize("NFKD", word).replace("u\u0308", "v")
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def stem(word: str) -> str:
    """A light English plural stemmer: berries → berry, boxes → box, seeds → seed; leaves
    words shorter than four letters, non-ASCII words and glass/hummus/raisin alone."""
    if len(word) < 4 or not (word.isascii() and word.isalpha()):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("oes") and len(word) > 5:
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def pinyin(word: str) -> tuple[str, str]:
    """Full pinyin and initials of a Chinese word, in the phrase reading pypinyin gives it:
    枸杞 → ('gouqi', 'gq'), 和尚头 → ('heshangtou', 'hst')."""
    return _pinyin(word)


@lru_cache(maxsize=65536)
def _pinyin(word: str) -> tuple[str, str]:
    # imported here: pypinyin's dictionaries cost about a second and 55 MB
    from pypinyin import Style, lazy_pinyin

    syllables = [
        s
        for s in (
            _NOT_ASCII_LETTER.sub("", x)
            for x in lazy_pinyin(word, style=Style.NORMAL, errors="ignore")
        )
        if s
    ]
    return "".join(syllables), "".join(s[0] for s in syllables)


def _is_han(text: str) -> bool:
    return bool(text) and _HAS_HAN.search(text) is not None


# No word is longer: a longer one is not a word anyone types (a run of one letter, a code
# pasted into a title) and, as a term, could pass PostgreSQL's limit of 2,047 bytes per lexeme
# (㌖ is キロメートル under NFKC: 120 of them made one term of 2,160 bytes)
MAX_WORD_CHARS = 60


def _tokens(text: str) -> Iterator[tuple[bool, str]]:
    """(is_han, token) for each run of Chinese characters and each other word of at most
    MAX_WORD_CHARS characters, in order."""
    for match in _TOKEN.finditer(text):
        han, word = match.groups()
        if han:
            yield True, han
        elif len(word) <= MAX_WORD_CHARS:
            yield False, fold_latin(word)


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- data: synonyms, region names, segmenter -----------------------------------------------


@dataclass(frozen=True)
class SynonymTable:
    """The synonym groups of synonyms.txt, indexed for lookup."""

    # per group: its terms (members, then the full pinyin of its Chinese members)
    expansions: tuple[tuple[str, ...], ...]
    # a member's term or a Chinese member's pinyin → the groups it belongs to
    keys: dict[str, tuple[int, ...]]
    chinese_members: frozenset[str]
    # multi-word English members, as their stems → the joined term they index as
    phrases: dict[tuple[str, ...], str]

    def expand(self, keys: Iterable[str]) -> tuple[str, ...]:
        """Every term of every group that one of `keys` belongs to."""
        groups = sorted({g for key in keys for g in self.keys.get(key, ())})
        return tuple(_dedupe(t for g in groups for t in self.expansions[g]))

    # derived once (the table is immutable), not on every call of the hot indexing path
    @cached_property
    def latin_keys(self) -> tuple[str, ...]:
        return tuple(sorted(k for k in self.keys if _ASCII_LETTERS.fullmatch(k)))

    @cached_property
    def longest_member(self) -> int:
        return max((len(m) for m in self.chinese_members), default=0)

    @cached_property
    def longest_phrase(self) -> int:
        return max((len(p) for p in self.phrases), default=0)

    @cached_property
    def long_chinese_members(self) -> tuple[str, ...]:
        """Chinese members of three or more characters, sorted (found inside longer runs)."""
        return tuple(sorted(m for m in self.chinese_members if len(m) > 2))


def parse_synonyms(text: str) -> SynonymTable:
    """Parse synonym lines (`枸杞, 枸杞子, wolfberry, goji berry`; `#` starts a comment)."""
    expansions: list[tuple[str, ...]] = []
    keys: dict[str, list[int]] = {}
    chinese: set[str] = set()
    phrases: dict[tuple[str, ...], str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        members = [normalise(m) for m in line.split("#", 1)[0].split(",")]
        members = [m for m in members if m]
        if not members:
            continue
        terms: list[str] = []
        group_keys: list[str] = []
        pinyins: list[str] = []
        for member in members:
            if _is_han(member):
                word = member.replace(" ", "")
                if not all(is_han for is_han, _ in _tokens(word)) or len(list(_tokens(word))) != 1:
                    raise ValueError(
                        f"synonyms line {number}: {member!r} mixes Chinese with other text"
                    )
                chinese.add(word)
                terms.append(word)
                group_keys.append(word)
                full, _ = pinyin(word)
                pinyins.append(full)
            else:
                stems = tuple(stem(w) for _, w in _tokens(member) if w not in LATIN_STOPWORDS)
                if not stems:
                    raise ValueError(f"synonyms line {number}: {member!r} has no words")
                term = "".join(stems)
                if len(stems) > 1:
                    phrases[stems] = term
                terms.append(term)
                group_keys.append(term)
        index = len(expansions)
        expansions.append(tuple(_dedupe(terms + pinyins)))
        for key in _dedupe(group_keys + pinyins):
            keys.setdefault(key, []).append(index)
    return SynonymTable(
        expansions=tuple(expansions),
        keys={k: tuple(v) for k, v in keys.items()},
        chinese_members=frozenset(chinese),
        phrases=phrases,
    )


def _synonyms_text() -> str:
    return importlib.resources.files("search").joinpath("synonyms.txt").read_text("utf-8")


@_once
def synonyms() -> SynonymTable:
    """The synonym table shipped as search/synonyms.txt."""
    return parse_synonyms(_synonyms_text())


def analysis_version() -> str:
    """Changes whenever indexed terms may change (code or synonym table): store it with an
    index and reindex when it differs."""
    digest = hashlib.sha256(_synonyms_text().encode("utf-8")).hexdigest()[:12]
    return f"{ANALYSIS_VERSION}-{digest}"


def region_short_name(name: str) -> str:
    """靖远县 → 靖远, 宁夏回族自治区 → 宁夏; two-character names keep their suffix (和县)."""
    for suffix in _REGION_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


@_once
def region_names() -> frozenset[str]:
    """Short names of China's provinces, cities and counties (宁夏, 白银, 靖远), read from the
    adcode table the `cpca` package ships (read directly: importing cpca pulls in pandas)."""
    spec = importlib.util.find_spec("cpca")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "adcodes.csv"
    if not path.is_file():
        return frozenset()
    names: set[str] = set()
    with path.open(encoding="utf-8", newline="") as fh:
        for record in csv.DictReader(fh):
            short = region_short_name(normalise(record.get("name") or ""))
            if len(short) >= 2 and all(is_han for is_han, _ in _tokens(short)):
                names.add(short)
    return frozenset(names)


@_once
def _segmenter() -> ModuleType:
    """rjieba's process-wide segmenter, taught the synonym members and the region names.

    The module's default instance is extended rather than a second one built: each holds its
    own copy of the dictionary (about 25 MB)."""
    import rjieba

    for word in sorted(region_names() | synonyms().chinese_members):
        rjieba.add_word(word, None, None)
    return rjieba


def load() -> None:
    """Load the segmenter, the synonyms, the region names and pypinyin's dictionaries now
    (about half a second and 90 MB) instead of in the first search or indexing call. A
    long-running process does it at start-up, before it puts its start-up objects beyond the
    garbage collector: their 190,000 objects would otherwise make every full collection take
    about 18 ms, a pause for every request in flight."""
    _segmenter()
    pinyin("枸杞")


def _words(run: str) -> list[str]:
    """Split a run of Chinese characters into words: synonym members first (longest, then
    leftmost, so that 黑瓜子 stays whole), the rest as the segmenter cuts it."""
    table = synonyms()
    longest = table.longest_member
    words: list[str] = []
    start = i = 0
    while i < len(run):
        for length in range(min(longest, len(run) - i), 1, -1):
            if run[i : i + length] in table.chinese_members:
                if start < i:
                    words += _segmenter().cut(run[start:i])
                words.append(run[i : i + length])
                i = start = i + length
                break
        else:
            i += 1
    if start < len(run):
        words += _segmenter().cut(run[start:])
    return [w for w in words if w.strip() and len(w) <= MAX_WORD_CHARS]


# --- indexing --------------------------------------------------------------------------------


def index_terms(text: str) -> list[str]:
    """The terms a document field is indexed with (see `_index_terms`); memoised, since
    cooperative, product and place names repeat across thousands of listings."""
    return list(_index_terms(text))


@lru_cache(maxsize=50_000)
def _index_terms(text: str) -> tuple[str, ...]:
    """The terms a document field is indexed with, without repeats, in a stable order.

    Chinese: each word (and the shorter words inside long ones), every overlapping bigram and
    every single character, so that any one- or two-character substring is a term; the full
    pinyin of each word and, for words of two or more characters, its initials; synonym
    members found inside the text. Latin: each word lower-cased, without accents and
    stemmed (wolfberries → wolfberry), multi-word synonyms joined (melon seeds → melonseed);
    numbers kept, and a word mixing digits and letters also by its parts (5kg → 5kg, 5, kg).

    Every term is made of letters and digits only, so a whitespace analyser or PostgreSQL's
    `simple` configuration keeps it whole."""
    table = synonyms()
    terms: list[str] = []
    latin_run: list[str] = []

    def flush_latin() -> None:
        for length in range(min(table.longest_phrase, len(latin_run)), 1, -1):
            for i in range(len(latin_run) - length + 1):
                phrase = table.phrases.get(tuple(latin_run[i : i + length]))
                if phrase:
                    terms.append(phrase)
        latin_run.clear()

    for is_han, token in _tokens(normalise(text)):
        if is_han:
            flush_latin()
            terms += _han_index_terms(token, table)
            continue
        latin_run.append(stem(token))
        if token in LATIN_STOPWORDS:
            continue
        parts = _PARTS.findall(token)
        if len(parts) == 1:
            terms.append(stem(token))
        else:
            terms.append(token)
            terms += [p if p.isdigit() else stem(p) for p in parts if p.isdigit() or len(p) > 1]
    flush_latin()
    return tuple(_dedupe(terms))


def _han_index_terms(run: str, table: SynonymTable) -> list[str]:
    words: list[str] = []
    for word in _words(run):
        words.append(word)
        if len(word) > 2:
            words += _segmenter().cut_for_search(word)
    words = _dedupe(words)
    terms: list[str] = []
    for word in words:
        if len(word) > 1:
            terms.append(word)
        full, initials = pinyin(word)
        if full:
            terms.append(full)
        if len(word) > 1 and len(initials) > 1:
            terms.append(initials)
    if len(run) > 2:
        terms += [m for m in table.long_chinese_members if m in run]
    return terms + _bigrams(run) + list(run)


# --- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TermGroup:
    """One required part of a query: a document matches it if it holds any of `terms`.

    `fuzzy` lists the typed Latin or pinyin words that no synonym explained, which a backend
    may correct with `AnalysedQuery.with_typos`; `region` marks a place name (宁夏, 靖远)."""

    terms: tuple[str, ...]
    fuzzy: tuple[str, ...] = ()
    region: bool = False


@dataclass(frozen=True)
class AnalysedQuery:
    """A user's query as an AND of groups, each an OR of exact terms of `index_terms`.

    Region words are required: 宁夏枸杞 finds 宁夏中宁枸杞 and any 枸杞 whose document
    carries 宁夏 (backends index the listing's province, city and county names), but not
    靖远枸杞, which comes from Gansu: a buyer who names a place means it, and 宁夏枸杞 is an
    origin that buyers pay for. A backend that finds nothing may retry `without_regions()`
    and say that it dropped the place names.

    PostgreSQL: index `setweight(array_to_tsvector(terms), ...)` (equivalently
    `to_tsvector('simple', ...)` over the space-joined terms, which it keeps whole) with a GIN
    index, and match `vector @@ CAST(:q AS tsquery)` with `q = analysed.tsquery()`.
    Elasticsearch: index the space-joined terms in a field with the `whitespace` analyser and
    use `analysed.es_query(field)` in the query's filter (or must) clause. The same terms go
    in, the same boolean comes out, so the two return the same documents."""

    groups: tuple[TermGroup, ...]

    @property
    def empty(self) -> bool:
        return not self.groups

    def as_lists(self) -> list[list[str]]:
        return [list(g.terms) for g in self.groups]

    def without_regions(self) -> AnalysedQuery:
        """The query without its place names, unless that would leave nothing."""
        kept = tuple(g for g in self.groups if not g.region)
        return AnalysedQuery(kept) if kept else self

    def fuzzy_words(self) -> list[str]:
        """The typed words a backend should look up in its vocabulary of terms before
        calling `with_typos`."""
        return _dedupe(w for g in self.groups for w in g.fuzzy)

    def with_typos(self, vocabulary: Collection[str] = ()) -> AnalysedQuery:
        """Correct the typed words that are not terms: each group with `fuzzy` words, none of
        whose terms is in `vocabulary` (the index's ASCII terms) or the synonym table, also
        matches the nearest of them and their synonyms: `wolfbery` → wolfberry, 枸杞, goji….

        A known word is never corrected, so `xiaomai` (小麦) does not turn into `xiaomi` (小米)
        while 小麦 is indexed. `vocabulary` needs only the candidates of `fuzzy_words()`; see
        `typo_candidates` for how each backend finds them. Backends call this for every query
        with fuzzy words, even when they found no candidates: English names mostly live in the
        synonym table, not in Chinese titles."""
        table = synonyms()
        known = [*vocabulary, *table.latin_keys]
        known_set = set(known)
        groups: list[TermGroup] = []
        for group in self.groups:
            if group.fuzzy:
                corrections: list[str] = []
                if not any(t in known_set for t in group.terms):
                    corrections = [c for w in group.fuzzy for c in typo_candidates(w, known)]
                terms = _dedupe([*group.terms, *corrections, *table.expand(corrections)])
                group = TermGroup(tuple(terms), (), group.region)
            groups.append(group)
        return AnalysedQuery(tuple(groups))

    def tsquery(self) -> str:
        """The query as tsquery text: `('枸杞' | 'goji') & '靖远'` ("" when empty)."""
        return " & ".join(
            "(" + " | ".join(_tsquery_quote(t) for t in g.terms) + ")"
            if len(g.terms) > 1
            else _tsquery_quote(g.terms[0])
            for g in self.groups
        )

    def es_query(self, field: str) -> dict[str, Any]:
        """The query as an Elasticsearch bool query over a whitespace-analysed field."""
        if not self.groups:
            return {"match_all": {}}
        return {"bool": {"filter": [{"terms": {field: list(g.terms)}} for g in self.groups]}}


def _tsquery_quote(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def analyse_query(text: str) -> AnalysedQuery:
    """Analyse a user's query into groups of alternative terms (see `AnalysedQuery`).

    Chinese words become one group each: a synonym member brings its whole group (枸杞子 →
    枸杞, wolfberry, goji, gouqi, …); a word of one or two characters is its own term (枣
    matches 红枣 and 大枣 through their single characters); a longer word requires each of its
    bigrams. Latin and pinyin words become one group each, typed and stemmed (Wolfberries →
    wolfberries, wolfberry) and expanded through synonyms; pinyin initials (gq) match the
    initials of whole words only. Typed words that are neither synonyms nor short stay
    `fuzzy` until `AnalysedQuery.with_typos` corrects them."""
    table = synonyms()
    regions = region_names()
    groups: list[tuple[TermGroup, bool]] = []  # (group, is a stop word)
    latin_run: list[str] = []

    def flush_latin() -> None:
        i = 0
        while i < len(latin_run):
            for length in range(min(table.longest_phrase, len(latin_run) - i), 1, -1):
                phrase = table.phrases.get(tuple(stem(w) for w in latin_run[i : i + length]))
                if phrase:
                    groups.append((TermGroup(table.expand([phrase])), False))
                    i += length
                    break
            else:
                word = latin_run[i]
                groups.append((_latin_group(word, table), word in LATIN_STOPWORDS))
                i += 1
        latin_run.clear()

    for is_han, token in _tokens(normalise(text)):
        if not is_han:
            latin_run.append(token)
            continue
        flush_latin()
        for word in _words(token):
            region = word in regions
            if word in table.chinese_members:
                expansion = _dedupe([word, *table.expand([word])])
                groups.append((TermGroup(tuple(expansion), (), region), False))
            elif len(word) <= 2:
                groups.append((TermGroup((word,), (), region), word in QUERY_STOP_CHARACTERS))
            else:
                groups += [(TermGroup((b,), (), region), False) for b in _bigrams(word)]
    flush_latin()
    if not all(stop for _, stop in groups):
        groups = [(g, stop) for g, stop in groups if not stop]
    kept: list[TermGroup] = []
    fuzzy = 0
    for group in _dedupe_groups(g for g, _ in groups):
        if group.fuzzy:
            fuzzy += 1
            if fuzzy > MAX_FUZZY_WORDS:
                group = TermGroup(group.terms, (), group.region)
        kept.append(group)
    return AnalysedQuery(tuple(kept))


def _latin_group(word: str, table: SynonymTable) -> TermGroup:
    parts = _PARTS.findall(word)
    typed = _dedupe([word, stem(word)]) if len(parts) == 1 else [word]
    if any(t in table.keys for t in typed):
        return TermGroup(tuple(_dedupe([*typed, *table.expand(typed)])))
    fuzzy = [t for t in typed if _ASCII_LETTERS.fullmatch(t) and max_edits(t) > 0]
    return TermGroup(tuple(typed), tuple(fuzzy))


def _dedupe_groups(groups: Iterable[TermGroup]) -> list[TermGroup]:
    """Drop each group implied by another: one whose terms include all of another's
    (枸杞 goji wolfberries is one group), or repeats an earlier one."""
    groups = list(groups)
    sets = [frozenset(g.terms) for g in groups]
    return [
        group
        for i, group in enumerate(groups)
        if not any(other < sets[i] or (other == sets[i] and j < i) for j, other in enumerate(sets))
    ]


def query_terms(text: str) -> list[list[str]]:
    """`analyse_query(text)` as plain lists: AND over the outer list, OR within each inner."""
    return analyse_query(text).as_lists()


# --- typo tolerance --------------------------------------------------------------------------


def max_edits(word: str) -> int:
    """Typos tolerated in a typed word: none below 4 letters, one up to 7, two from 8."""
    if len(word) >= TWO_TYPOS_LENGTH:
        return 2
    if len(word) >= ONE_TYPO_LENGTH:
        return 1
    return 0


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Optimal string alignment distance (insertions, deletions, substitutions and swaps of
    adjacent letters, as Elasticsearch's fuzzy query with transpositions counts them); with
    `limit`, any distance above it is reported as limit + 1."""
    cap = limit if limit is not None else len(a) + len(b)
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > cap:
            return cap + 1
        previous2, previous = previous, current
    return min(previous[-1], cap + 1)


def typo_candidates(word: str, vocabulary: Iterable[str], *, limit: int = 8) -> list[str]:
    """The vocabulary terms a typed Latin or pinyin word may have meant.

    A word that is itself in the vocabulary gives just itself; otherwise the ASCII terms
    within `max_edits(word)` typos, only those at the smallest distance found, in alphabetical
    order, at most `limit`: gouqu → ['gouqi'], wolfbery → ['wolfberry'].

    This function decides; the backends only fetch candidates for it, so both return the
    same corrections. PostgreSQL keeps a vocabulary table of the distinct ASCII terms with a
    trigram GIN index and fetches `WHERE term % :word` after `SET LOCAL
    pg_trgm.similarity_threshold = trigram_threshold(word)`, a bound under which no term
    within the allowed typos can fall. Elasticsearch fetches them with a `fuzzy` query
    (fuzziness ES_FUZZINESS, transpositions true, prefix_length 0) on a keyword field of a
    vocabulary index. Both then call `AnalysedQuery.with_typos`."""
    k = max_edits(word)
    if not _ASCII_LETTERS.fullmatch(word):
        return []
    best = k + 1
    found: list[str] = []
    for term in vocabulary:
        if term == word:
            return [word]
        if k == 0 or abs(len(term) - len(word)) > k or not _ASCII_TERM.fullmatch(term):
            continue
        distance = edit_distance(word, term, k)
        if distance < best:
            best, found = distance, [term]
        elif distance == best:
            found.append(term)
    return sorted(set(found))[:limit] if best <= k else []


def trigrams(word: str) -> set[str]:
    """The trigrams pg_trgm makes of one lower-case word: padded with two spaces in front and
    one behind."""
    padded = f"  {word} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def trigram_threshold(word: str) -> float:
    """A pg_trgm similarity below which no term within `max_edits(word)` typos of `word` can
    fall: each typo changes at most four of the word's trigrams (a swap of two letters), so
    with n distinct trigrams and k typos the similarity is at least (n - 4k) / (n + 4k)."""
    n, k = len(trigrams(word)), max_edits(word)
    return max(0.0, math.floor((n - 4 * k) / (n + 4 * k) * 1000) / 1000)
