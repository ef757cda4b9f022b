"""Look regions up by code, Chinese name or pinyin; children; distance; poverty-county flags."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, case, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from market.db import utcnow
from market.errors import Forbidden, Invalid, NotFound
from market.regions import geo
from market.regions.models import Region

_LATIN = re.compile(r"^[a-z]+$")


def ancestors_of(code: str) -> list[str]:
    """The codes that contain `code` (province, city), itself included."""
    out = [code[:2] + "0000", code[:4] + "00", code]
    return list(dict.fromkeys(out))


def in_scope(code: str, scope_codes: Iterable[str]) -> bool:
    """Whether a region lies inside one of the scope regions (province, city or county)."""
    ancestors = set(ancestors_of(code))
    return any(scope in ancestors for scope in scope_codes)


def prefix_of(code: str) -> str:
    """The code prefix a region's contents share: 620000 → 62, 620400 → 6204, 620421 → 620421."""
    while len(code) > 2 and code.endswith("00"):
        code = code[:-2]
    return code


def within(
    column: ColumnElement[str] | InstrumentedAttribute[str], scope_codes: Iterable[str]
) -> ColumnElement[bool]:
    """SQL twin of in_scope(): the region code in `column` lies inside one of the scopes."""
    conditions = [column.startswith(prefix_of(code), autoescape=True) for code in scope_codes]
    return or_(*conditions) if conditions else false()


async def get_region(session: AsyncSession, code: str) -> Region:
    region = await session.get(Region, code)
    if region is None:
        raise NotFound(f"There is no region with code {code}.")
    return region


async def require_region(session: AsyncSession, code: str, *, field: str) -> Region:
    region = await session.get(Region, code)
    if region is None:
        raise Invalid.field(field, f"Unknown region code {code}.", code="unknown_region")
    return region


async def names(session: AsyncSession, codes: Iterable[str]) -> dict[str, str]:
    """Chinese names by code, for the codes that exist."""
    rows = await session.execute(
        select(Region.code, Region.name_zh).where(Region.code.in_(list(codes)))
    )
    return {code: name for code, name in rows}


async def points(session: AsyncSession) -> dict[str, tuple[str, float, float]]:
    """Every region's Chinese name, latitude and longitude, by code: the gazetteer, a few
    thousand rows, for callers that keep it in memory."""
    rows = await session.execute(
        select(Region.code, Region.name_zh, Region.latitude, Region.longitude)
    )
    return {code: (name, float(lat), float(lon)) for code, name, lat, lon in rows}


async def path_names(session: AsyncSession, region: Region) -> list[str]:
    codes = [c for c in ancestors_of(region.code) if c != region.code]
    names = {
        r.code: r.name_zh
        for r in await session.scalars(select(Region).where(Region.code.in_(codes)))
    }
    path = [names[c] for c in codes if c in names and names[c] != region.name_zh]
    return [*path, region.name_zh]


async def search(
    session: AsyncSession, *, q: str, level: str | None = None, limit: int = 20
) -> list[Region]:
    """Match the Chinese name (prefix, then anywhere), the pinyin or the pinyin initials."""
    text = q.strip()
    latin = re.sub(r"[\s'’-]", "", text.lower())
    conditions = []
    if _LATIN.match(latin):
        conditions.append(Region.name_pinyin.startswith(latin, autoescape=True))
        conditions.append(Region.name_initials == latin)
    else:
        conditions.append(Region.name_zh.contains(text, autoescape=True))
    stmt = select(Region).where(or_(*conditions))
    if level:
        stmt = stmt.where(Region.level == level)
    # exact short names first, then higher levels, then shorter names
    exact = or_(Region.short_name_zh == text, Region.name_zh == text, Region.name_pinyin == latin)
    level_rank = case({"province": 0, "city": 1, "county": 2}, value=Region.level)
    stmt = stmt.order_by(exact.desc(), level_rank, func.length(Region.name_zh), Region.code)
    return list(await session.scalars(stmt.limit(limit)))


async def children(session: AsyncSession, code: str) -> list[Region]:
    await get_region(session, code)
    rows = await session.scalars(
        select(Region).where(Region.parent_code == code).order_by(Region.code)
    )
    return list(rows)


async def distance(
    session: AsyncSession, from_code: str, to_code: str
) -> tuple[Region, Region, float]:
    origin = await get_region(session, from_code)
    destination = await get_region(session, to_code)
    km = geo.distance_km(
        origin.latitude, origin.longitude, destination.latitude, destination.longitude
    )
    return origin, destination, km


# ---------------------------------------------------------------- poverty counties


def check_flag_scope(code: str, *, is_platform: bool, authority_scopes: list[str]) -> None:
    if is_platform or in_scope(code, authority_scopes):
        return
    raise Forbidden(
        "Only platform operators, or officials whose audit regions include this county, "
        "may set the poverty-county flag.",
        code="outside_scope",
    )


async def set_poverty_flag(session: AsyncSession, *, code: str, designated: bool) -> Region:
    region = await get_region(session, code)
    if region.level != "county":
        raise Invalid.field("code", f"{region.name_zh} is a {region.level}, not a county.")
    if region.is_poverty_county != designated:
        region.is_poverty_county = designated
        region.poverty_flag_updated_at = utcnow()
        await session.flush()
    return region


@dataclass
class PovertyImport:
    rows: int = 0
    changed: int = 0
    unchanged: int = 0
    errors: list[dict[str, str | int]] = field(default_factory=list)


def decode_csv(data: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 — what Chinese office software writes."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise Invalid.field("file", "The file is neither UTF-8 nor GB18030 text.") from exc


async def import_poverty_counties(
    session: AsyncSession,
    *,
    data: bytes,
    is_platform: bool,
    authority_scopes: list[str],
) -> PovertyImport:
    """CSV with columns `code` and `designated` (1/0, true/false, 是/否). Valid rows are applied;
    each bad row is reported with its line number; re-importing changes nothing."""
    reader = csv.DictReader(io.StringIO(decode_csv(data)))
    if not reader.fieldnames or not {"code", "designated"} <= {
        f.strip() for f in reader.fieldnames
    }:
        raise Invalid.field("file", "The CSV needs a header row with the columns code,designated.")
    result = PovertyImport()
    truthy, falsy = {"1", "true", "yes", "是", "y"}, {"0", "false", "no", "否", "n"}
    seen: dict[str, int] = {}  # code → the line that gave it
    for raw_row in reader:
        line = reader.line_num  # the physical line, right even after blank lines
        result.rows += 1
        # the header's names as the check above read them (" designated" is designated)
        row = {(k or "").strip(): v for k, v in raw_row.items()}
        code = unicodedata.normalize("NFKC", row.get("code") or "").strip()
        raw = unicodedata.normalize("NFKC", row.get("designated") or "").strip().lower()
        if code in seen:
            result.errors.append(
                {"line": line, "reason": f"{code} is already on line {seen[code]}"}
            )
            continue
        seen[code] = line
        if raw not in truthy | falsy:
            result.errors.append(
                {"line": line, "reason": f"designated must be 1 or 0, got {raw!r}"}
            )
            continue
        region = await session.get(Region, code) if re.fullmatch(r"\d{6}", code) else None
        if region is None or region.level != "county":
            result.errors.append({"line": line, "reason": f"{code!r} is not a county code"})
            continue
        if not (is_platform or in_scope(code, authority_scopes)):
            result.errors.append({"line": line, "reason": f"{code} is outside your regions"})
            continue
        designated = raw in truthy
        if region.is_poverty_county == designated:
            result.unchanged += 1
            continue
        await session.execute(
            update(Region)
            .where(Region.code == code)
            .values(is_poverty_county=designated, poverty_flag_updated_at=utcnow())
        )
        result.changed += 1
    return result
