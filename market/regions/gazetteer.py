"""Read China's gazetteer from the adcode table (with coordinates) that the `cpca` package ships.

The file is read directly, without importing `cpca` itself, which would pull in pandas.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pypinyin import lazy_pinyin

_SUFFIXES = (
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
_MUNICIPALITIES = {"11", "12", "31", "50"}


@dataclass(frozen=True)
class GazetteerRow:
    code: str
    name_zh: str
    short_name_zh: str
    name_pinyin: str
    name_initials: str
    level: str
    parent_code: str | None
    longitude: Decimal
    latitude: Decimal


def adcodes_path() -> Path:
    spec = importlib.util.find_spec("cpca")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the cpca package (source of the gazetteer) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "adcodes.csv"


def short_name(name: str) -> str:
    """靖远县 → 靖远, 宁夏回族自治区 → 宁夏; two-character names keep their suffix (e.g. 和县)."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


# Place names whose reading differs from the common one that pypinyin picks.
_PLACE_READINGS = {"长治": "chang zhi", "单县": "shan xian", "尉氏": "yu shi", "洪洞": "hong tong"}


def pinyin_of(name: str, short: str) -> tuple[str, str]:
    """Pinyin of the short name, read within the full name so that phrases disambiguate
    (朝阳区 → chaoyang), and its initials: 靖远县 → ('jingyuan', 'jy')."""
    override = _PLACE_READINGS.get(short) or _PLACE_READINGS.get(name)
    if override:
        syllables = override.split()
    else:
        syllables = list(lazy_pinyin(name, errors="replace"))[: len(short)]
    clean = re.compile(r"[^a-z]")
    syllables = [clean.sub("", s.lower()) for s in syllables]
    return "".join(syllables), "".join(s[:1] for s in syllables if s)


def _level(code: str) -> str:
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "city"
    return "county"


def read_gazetteer(path: Path | None = None) -> Iterator[GazetteerRow]:
    """Provinces, prefecture cities and counties with parents; placeholders without
    coordinates (the bare 市辖区 rows) are skipped and their children attach to the province."""
    source = path or adcodes_path()
    rows: dict[str, tuple[str, Decimal, Decimal]] = {}
    with source.open(encoding="utf-8", newline="") as fh:
        for record in csv.DictReader(fh):
            code = record["adcode"][:6]
            if not record["longitude"] or not record["latitude"]:
                continue
            rows[code] = (
                record["name"].strip(),
                Decimal(record["longitude"]).quantize(Decimal("0.000001")),
                Decimal(record["latitude"]).quantize(Decimal("0.000001")),
            )
    for code in sorted(rows):
        name, lon, lat = rows[code]
        level = _level(code)
        parent: str | None = None
        if level == "city":
            parent = code[:2] + "0000"
        elif level == "county":
            city = code[:4] + "00"
            parent = city if city in rows else code[:2] + "0000"
        if parent is not None and parent not in rows:
            parent = None
        if level == "city" and name == "市辖区" and code[:2] in _MUNICIPALITIES:
            name = rows[code[:2] + "0000"][0]
        short = short_name(name)
        full_pinyin, initials = pinyin_of(name, short)
        yield GazetteerRow(code, name, short, full_pinyin, initials, level, parent, lon, lat)
