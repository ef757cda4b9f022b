"""The poor-household registry that authorities import, cooperatives' member households, masked
personal data and the log of reveals; and poor status on a date, for the other domains."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Date,
    Table,
    Uuid,
    delete,
    exists,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from market.calendar import china_today
from market.db import utcnow
from market.deps import Principal
from market.errors import Conflict, Forbidden, Invalid, NotFound
from market.households.models import (
    CooperativeMember,
    Household,
    PersonalDataReveal,
    PoorStatusPeriod,
)
from market.organisations import service as organisations_service
from market.organisations.models import Organisation
from market.pagination import PageParams, paginate
from market.regions import service as regions_service

# ---------------------------------------------------------------- poor status, for other domains


def poor_on(household_id: ColumnElement[Any], on: ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL: whether the registry lists the household as poor on the day `on`. Both ends of a
    period are inclusive, so the day after `valid_until` is not poor; no end means still poor."""
    return (
        exists()
        .where(
            PoorStatusPeriod.household_id == household_id,
            PoorStatusPeriod.valid_from <= on,
            or_(PoorStatusPeriod.valid_until.is_(None), on <= PoorStatusPeriod.valid_until),
        )
        .correlate_except(PoorStatusPeriod)
    )


async def is_poor_on(session: AsyncSession, *, household_id: uuid.UUID, on: dt.date) -> bool:
    stmt = select(poor_on(literal(household_id, Uuid()), literal(on, Date())))
    return bool(await session.scalar(stmt))


def _member_on(on: dt.date) -> ColumnElement[bool]:
    day = literal(on, Date())
    return (CooperativeMember.joined_on <= day) & or_(
        CooperativeMember.left_on.is_(None), day <= CooperativeMember.left_on
    )


async def require_member(
    session: AsyncSession, *, cooperative_id: uuid.UUID, household_id: uuid.UUID, on: dt.date
) -> Household:
    """The household, if it is a member of the cooperative on that day; else 422 naming
    `household_id` (another cooperative's household is not there for you either)."""
    household = await session.scalar(
        select(Household)
        .join(CooperativeMember, CooperativeMember.household_id == Household.id)
        .where(
            CooperativeMember.cooperative_id == cooperative_id,
            CooperativeMember.household_id == household_id,
            _member_on(on),
        )
        .limit(1)
    )
    if household is None:
        raise Invalid.field(
            "household_id",
            f"This household is not a member of your cooperative on {on.isoformat()}.",
            code="not_a_member",
        )
    return household


# ---------------------------------------------------------------- ID numbers and masking

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_FORMAT = re.compile(r"[0-9]{17}[0-9X]")


def id_check_character(first17: str) -> str:
    """The GB 11643-1999 check character of the first 17 digits of an ID-card number."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def normalise_id_number(raw: str) -> str:
    """An 18-character resident ID number, upper-case X; ValueError says what is wrong
    (without repeating the number, which must not reach logs)."""
    number = re.sub(r"\s", "", unicodedata.normalize("NFKC", raw)).upper()
    if not _ID_FORMAT.fullmatch(number):
        raise ValueError("must be 17 digits followed by a digit or X")
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise ValueError("has a birth date (characters 7-14) that is not a date") from None
    if id_check_character(number[:17]) != number[17]:
        raise ValueError("fails the GB 11643 check character")
    return number


def hash_id_number(key: bytes, normalised: str) -> bytes:
    """HMAC-SHA256 with the server's key: equal numbers match, the number cannot be recovered."""
    return hmac.new(key, normalised.encode(), hashlib.sha256).digest()


def mask_name(name: str) -> str:
    """张建国 → 张**: the first character, a star for each other one."""
    name = name.strip()
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else "*"


def mask_phone(phone: str | None) -> str | None:
    """13812345678 → 138****5678."""
    if not phone:
        return None
    if len(phone) >= 8:
        return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
    return "*" * (len(phone) - 2) + phone[-2:]


def mask_id_number(last4: str | None) -> str | None:
    return "*" * 14 + last4 if last4 else None


def masked_view(household: Household) -> dict[str, Any]:
    """What anyone may see of a household: registry id, county and village in clear, the
    personal data masked. Unmasked data only comes from `reveal`, which is logged."""
    return {
        "id": household.id,
        "registry_id": household.registry_id,
        "registered": household.registry_id is not None,
        "county_code": household.county_code,
        "village": household.village,
        "head_name": mask_name(household.head_name),
        "phone": mask_phone(household.phone),
        "id_number": mask_id_number(household.id_number_last4),
    }


# ---------------------------------------------------------------- officials and their scope


@dataclass(frozen=True)
class Official:
    """Who keeps the registry: the authority organisations a person acts for, each with its
    audit regions; or the platform itself (a command-line job), everywhere, for no one."""

    user_id: uuid.UUID | None
    grants: tuple[tuple[uuid.UUID, tuple[str, ...]], ...] = ()
    everywhere: bool = False

    @property
    def scopes(self) -> list[str]:
        return sorted({code for _, codes in self.grants for code in codes})

    def covers(self, county_code: str) -> bool:
        return self.everywhere or regions_service.in_scope(county_code, self.scopes)

    def organisation_for(self, county_code: str) -> uuid.UUID | None:
        """The authority whose audit regions hold the county (the first, if several do)."""
        for organisation_id, codes in self.grants:
            if regions_service.in_scope(county_code, codes):
                return organisation_id
        return None

    def county_clause(self) -> ColumnElement[bool]:
        """SQL: the household's county lies in the official's regions (as `covers`)."""
        if self.everywhere:
            return true()
        return regions_service.within(Household.county_code, self.scopes)


async def official_of(session: AsyncSession, principal: Principal) -> Official:
    """The caller as an official: owner or staff of a verified authority with audit regions."""
    scopes = await organisations_service.authority_scopes_of(session, principal)
    if not scopes or principal.user_id is None:
        raise Forbidden(
            "Only officials (owner or staff) of a verified authority organisation with audit "
            "regions may do this.",
            code="authority_only",
        )
    grants = []
    for organisation, role in await organisations_service.memberships_of(
        session, principal.user_id
    ):
        if (
            organisation.kind == "authority"
            and organisation.verification_status == "verified"
            and role in ("owner", "staff")
        ):
            codes = await organisations_service.audit_regions(session, organisation.id)
            if codes:
                grants.append((organisation.id, tuple(codes)))
    return Official(user_id=principal.user_id, grants=tuple(grants))


async def authority_job(session: AsyncSession, organisation_id: uuid.UUID | None) -> Official:
    """Who a command-line import acts for: an authority (limited to its audit regions), or
    without one the platform (every region, no registry organisation)."""
    if organisation_id is None:
        return Official(user_id=None, everywhere=True)
    organisation = await session.get(Organisation, organisation_id)
    if organisation is None or organisation.kind != "authority":
        raise NotFound(f"There is no authority organisation {organisation_id}.")
    if organisation.verification_status != "verified":
        raise Forbidden(f"{organisation.name_zh} is not verified.", code="not_verified")
    codes = await organisations_service.audit_regions(session, organisation_id)
    if not codes:
        raise Forbidden(
            f"{organisation.name_zh} has no audit regions; a platform operator sets them first.",
            code="no_audit_regions",
        )
    return Official(user_id=None, grants=((organisation_id, tuple(codes)),))


# ---------------------------------------------------------------- registry import


class ImportMode(StrEnum):
    partial = "partial"  # valid households are written, bad rows reported
    all_or_nothing = "all_or_nothing"  # any bad row: nothing is written, 422 lists the rows


REGISTRY_COLUMNS = (
    "registry_id",
    "county_code",
    "head_name",
    "id_number",
    "phone",
    "village",
    "poor_from",
    "poor_until",
)
REQUIRED_COLUMNS = ("registry_id", "county_code", "head_name", "id_number")
_REGISTRY_ID = re.compile(r"[\w-]{1,40}")
_PHONE = re.compile(r"\+?[0-9][0-9-]{4,19}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CHUNK = 1000
# Core tables for the bulk writes: the ORM would insert rows with server-made keys one by one
_HOUSEHOLD = cast(Table, Household.__table__)
_POOR_STATUS_PERIOD = cast(Table, PoorStatusPeriod.__table__)


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    reason: str


@dataclass
class RegistryImport:
    """Counts are of households (one registry id, possibly on several rows)."""

    mode: ImportMode
    rows: int = 0
    households: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class _Person:
    """The household columns, which every row of one registry id must repeat identically."""

    county_code: str
    head_name: str
    id_number_hash: bytes
    id_number_last4: str
    phone: str | None
    village: str | None


@dataclass
class _Row:
    line: int
    registry_id: str | None = None
    person: _Person | None = None
    period: tuple[dt.date, dt.date | None] | None = None
    errors: list[RowError] = field(default_factory=list)


@dataclass
class _FileHousehold:
    registry_id: str
    lines: list[int] = field(default_factory=list)
    person: _Person | None = None
    first_line: int = 0
    periods: list[tuple[dt.date, dt.date | None, int]] = field(default_factory=list)
    bad: bool = False

    def content_hash(self) -> bytes:
        """SHA-256 of the canonical content: equal hash, nothing to write."""
        assert self.person is not None
        person = self.person
        periods = sorted((start, until) for start, until, _ in self.periods)
        canonical = {
            "registry_id": self.registry_id,
            "county_code": person.county_code,
            "head_name": person.head_name,
            "id_number_hash": person.id_number_hash.hex(),
            "phone": person.phone,
            "village": person.village,
            "poor_periods": [[s.isoformat(), u.isoformat() if u else None] for s, u in periods],
        }
        text = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).digest()


def _date(value: str, column: str, row: _Row) -> dt.date | None:
    if not value:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        row.errors.append(RowError(row.line, column, f"{column} must be a date YYYY-MM-DD"))
        return None


class _Counties:
    """County codes checked once per import: known, county level, inside the caller's regions."""

    def __init__(self, session: AsyncSession, official: Official) -> None:
        self.session = session
        self.official = official
        self.problems: dict[str, str | None] = {}

    async def problem(self, code: str) -> str | None:
        if code not in self.problems:
            try:
                region = await regions_service.get_region(self.session, code)
            except NotFound:
                self.problems[code] = f"{code} is not a known region code"
            else:
                if region.level != "county":
                    self.problems[code] = f"{code} ({region.name_zh}) is not a county"
                elif not self.official.covers(code):
                    self.problems[code] = (
                        f"county {code} ({region.name_zh}) is outside your regions"
                    )
                else:
                    self.problems[code] = None
        return self.problems[code]


async def _parse_row(
    raw: dict[str | None, Any], line: int, key: bytes, counties: _Counties
) -> _Row:
    row = _Row(line)

    def bad(column: str | None, reason: str) -> None:
        row.errors.append(RowError(line, column, reason))

    if raw.get(None):
        bad(None, "the row has more values than the header has columns")
    # NFKC, so that ids, codes, numbers and dates typed in full-width digits (６２０４２１,
    # common in files from office software) read as the same ASCII ones
    values = {
        c: unicodedata.normalize("NFKC", str(raw.get(c) or "")).strip() for c in REGISTRY_COLUMNS
    }

    registry_id = values["registry_id"]
    if not registry_id:
        bad("registry_id", "registry_id is empty")
    elif not _REGISTRY_ID.fullmatch(registry_id):
        bad("registry_id", "registry_id must be 1-40 letters, digits, '-' or '_'")
    else:
        row.registry_id = registry_id

    county_code = values["county_code"]
    if not re.fullmatch(r"[0-9]{6}", county_code):
        bad("county_code", "county_code must be a 6-digit county code")
    elif problem := await counties.problem(county_code):
        bad("county_code", problem)

    head_name = values["head_name"]
    if not head_name:
        bad("head_name", "head_name is empty")
    elif len(head_name) > 100:
        bad("head_name", "head_name is longer than 100 characters")

    id_number = ""
    try:
        id_number = normalise_id_number(values["id_number"])
    except ValueError as exc:
        bad("id_number", f"id_number {exc}" if values["id_number"] else "id_number is empty")

    phone = re.sub(r"\s", "", values["phone"]) or None
    if phone is not None and not _PHONE.fullmatch(phone):
        bad("phone", "phone must be 5-20 digits (an optional leading + and dashes allowed)")

    village = values["village"] or None
    if village is not None and len(village) > 100:
        bad("village", "village is longer than 100 characters")

    poor_from = _date(values["poor_from"], "poor_from", row)
    poor_until = _date(values["poor_until"], "poor_until", row)
    if poor_until is not None and poor_from is None and not values["poor_from"]:
        bad("poor_from", "poor_until is given without poor_from")
    if poor_from and poor_until and poor_until < poor_from:
        bad("poor_until", "poor_until is before poor_from")

    if not row.errors:
        row.person = _Person(
            county_code=county_code,
            head_name=head_name,
            id_number_hash=hash_id_number(key, id_number),
            id_number_last4=id_number[-4:],
            phone=phone,
            village=village,
        )
        row.period = (poor_from, poor_until) if poor_from else None
    return row


def _group(rows: Iterable[_Row], errors: list[RowError]) -> dict[str, _FileHousehold]:
    """Rows by registry id: one household's rows must agree; its periods must not overlap."""
    households: dict[str, _FileHousehold] = {}
    for row in rows:
        if row.registry_id is None:
            continue
        household = households.setdefault(row.registry_id, _FileHousehold(row.registry_id))
        household.lines.append(row.line)
        if row.person is None:
            household.bad = True
            continue
        if household.person is None:
            household.person, household.first_line = row.person, row.line
        elif household.person != row.person:
            differing = [
                name
                for name in ("county_code", "head_name", "id_number", "phone", "village")
                if getattr(household.person, "id_number_hash" if name == "id_number" else name)
                != getattr(row.person, "id_number_hash" if name == "id_number" else name)
            ]
            errors.append(
                RowError(
                    row.line,
                    differing[0],
                    f"{', '.join(differing)} differ(s) from line {household.first_line} "
                    f"of registry id {row.registry_id}",
                )
            )
            household.bad = True
            continue
        if row.period is not None:
            household.periods.append((*row.period, row.line))
    for household in households.values():
        household.periods.sort(key=lambda p: p[0])
        for before, after in zip(household.periods, household.periods[1:], strict=False):
            if before[1] is None or before[1] >= after[0]:
                errors.append(
                    RowError(
                        after[2],
                        "poor_from",
                        f"this poor period overlaps the one on line {before[2]}",
                    )
                )
                household.bad = True
    return households


@dataclass(frozen=True)
class _Stored:
    id: uuid.UUID
    county_code: str
    content_hash: bytes | None
    registry_organisation_id: uuid.UUID | None


async def _check_against_registry(
    session: AsyncSession,
    households: Sequence[_FileHousehold],
    official: Official,
    errors: list[RowError],
) -> dict[str, _Stored]:
    """Refuse households registered outside the caller's regions and ID numbers that belong to
    another registry id (in the registry or earlier in the file). Returns what is stored."""
    stored: dict[str, _Stored] = {}
    seen: dict[bytes, _FileHousehold] = {}
    for household in households:
        assert household.person is not None
        first = seen.setdefault(household.person.id_number_hash, household)
        if first is not household:
            errors.append(
                RowError(
                    household.first_line,
                    "id_number",
                    f"the same id_number as registry id {first.registry_id} "
                    f"on line {first.first_line}",
                )
            )
            household.bad = True
    for start in range(0, len(households), _CHUNK):
        chunk = [h for h in households[start : start + _CHUNK] if not h.bad]
        if not chunk:
            continue
        rows = await session.execute(
            select(
                Household.id,
                Household.registry_id,
                Household.county_code,
                Household.content_hash,
                Household.registry_organisation_id,
            ).where(Household.registry_id.in_([h.registry_id for h in chunk]))
        )
        for row in rows:
            stored[row.registry_id] = _Stored(
                row.id, row.county_code, row.content_hash, row.registry_organisation_id
            )
        owner_rows = await session.execute(
            select(Household.id_number_hash, Household.registry_id).where(
                Household.id_number_hash.in_([h.person.id_number_hash for h in chunk if h.person])
            )
        )
        owners = {id_hash: registry_id for id_hash, registry_id in owner_rows}
        for household in chunk:
            assert household.person is not None
            existing = stored.get(household.registry_id)
            if existing is not None and not official.covers(existing.county_code):
                errors.append(
                    RowError(
                        household.first_line,
                        "registry_id",
                        f"registry id {household.registry_id} is registered in county "
                        f"{existing.county_code}, outside your regions",
                    )
                )
                household.bad = True
                continue
            owner = owners.get(household.person.id_number_hash, household.registry_id)
            if owner != household.registry_id:
                # the other registry id is not named: it may lie outside the caller's regions
                errors.append(
                    RowError(
                        household.first_line,
                        "id_number",
                        "this id_number is already registered under another registry id",
                    )
                )
                household.bad = True
    return stored


async def import_registry(
    session: AsyncSession,
    *,
    data: bytes,
    key: bytes,
    official: Official,
    mode: ImportMode = ImportMode.partial,
    on_progress: Callable[[int, int], None] | None = None,
) -> RegistryImport:
    """Import registry rows (see REGISTRY_COLUMNS) from CSV in UTF-8 or GB18030.

    The file is authoritative for the households it names: their fields and their whole set of
    poor periods are replaced; households it does not name are left alone. A household with any
    bad row is refused as a whole. Re-importing the same content writes nothing.
    `on_progress(done, total)` counts households written.
    """
    reader = csv.DictReader(io.StringIO(regions_service.decode_csv(data), newline=""))
    if not reader.fieldnames:
        raise Invalid.field("file", "The file is empty; it needs a header row.")
    reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames]
    missing = [c for c in REQUIRED_COLUMNS if c not in reader.fieldnames]
    if missing:
        raise Invalid.field(
            "file",
            f"The CSV header lacks the column(s) {', '.join(missing)}; "
            f"expected {','.join(REGISTRY_COLUMNS)}.",
            code="bad_header",
        )
    result = RegistryImport(mode=mode)
    counties = _Counties(session, official)
    rows: list[_Row] = []
    for raw in reader:
        if not any(str(v or "").strip() for v in raw.values()):
            continue  # a blank line, or one of only commas as spreadsheets write them
        row = await _parse_row(raw, reader.line_num, key, counties)
        rows.append(row)
        result.errors.extend(row.errors)
    result.rows = len(rows)
    households = _group(rows, result.errors)
    result.households = len(households)
    candidates = [h for h in households.values() if not h.bad]
    stored = await _check_against_registry(session, candidates, official, result.errors)

    refused = [h for h in households.values() if h.bad]
    result.refused = len(refused)
    if mode == ImportMode.partial:
        erroneous = {e.line for e in result.errors}
        for household in refused:
            for line in household.lines:
                if line not in erroneous:
                    result.errors.append(
                        RowError(
                            line,
                            None,
                            f"not imported: another row of registry id {household.registry_id} "
                            "has an error",
                        )
                    )
    result.errors.sort(key=lambda e: (e.line, e.column or ""))
    if mode == ImportMode.all_or_nothing and result.errors:
        raise Invalid(
            f"{len({e.line for e in result.errors})} row(s) are not valid; nothing was imported "
            "(mode all_or_nothing).",
            code="import_refused",
            errors=[
                {"field": "file", "line": e.line, "column": e.column, "message": e.reason}
                for e in result.errors
            ],
        )
    accepted = [h for h in candidates if not h.bad]
    try:
        await _write(session, accepted, stored, official, result, on_progress)
    except IntegrityError as exc:
        raise Conflict(
            "The registry changed while this file was imported (another import of the same "
            "households?); nothing was imported. Run the import again.",
            code="registry_conflict",
        ) from exc
    return result


async def _write(
    session: AsyncSession,
    households: Sequence[_FileHousehold],
    stored: dict[str, _Stored],
    official: Official,
    result: RegistryImport,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    if on_progress:
        on_progress(0, len(households))
    # Period changes bump the registry version (a trigger, for stored lot shares). Take that
    # row first, before any household row: imports then queue whole instead of deadlocking.
    await session.execute(text("SELECT version FROM registry_version WHERE id = 1 FOR UPDATE"))
    now = utcnow()
    for start in range(0, len(households), _CHUNK):
        chunk = households[start : start + _CHUNK]
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for household in chunk:
            assert household.person is not None
            content_hash = household.content_hash()
            existing = stored.get(household.registry_id)
            if existing is not None and existing.content_hash == content_hash:
                result.unchanged += 1
                continue
            values = {
                **asdict(household.person),
                "registry_id": household.registry_id,
                "content_hash": content_hash,
            }
            # a platform job (no authority) keeps the registry organisation already recorded
            organisation_id = official.organisation_for(household.person.county_code)
            if organisation_id is None and existing is not None:
                organisation_id = existing.registry_organisation_id
            values["registry_organisation_id"] = organisation_id
            if existing is None:
                new.append(values)
            else:
                changed.append({**values, "id": existing.id, "updated_at": now})
        ids: dict[str, uuid.UUID] = {}
        if new:
            inserted = await session.execute(
                insert(_HOUSEHOLD).returning(_HOUSEHOLD.c.id, _HOUSEHOLD.c.registry_id), new
            )
            ids.update({rid: id_ for id_, rid in inserted if rid is not None})
            result.created += len(new)
        if changed:
            await session.execute(update(Household), changed)
            await session.execute(
                delete(PoorStatusPeriod).where(
                    PoorStatusPeriod.household_id.in_([v["id"] for v in changed])
                )
            )
            ids.update({v["registry_id"]: v["id"] for v in changed})
            result.updated += len(changed)
        periods = [
            {"household_id": ids[h.registry_id], "valid_from": start_, "valid_until": until}
            for h in chunk
            if h.registry_id in ids
            for start_, until, _ in h.periods
        ]
        if periods:
            await session.execute(insert(_POOR_STATUS_PERIOD), periods)
        if on_progress:
            on_progress(min(start + _CHUNK, len(households)), len(households))


# ---------------------------------------------------------------- the registry, for officials


async def list_registry(
    session: AsyncSession,
    *,
    official: Official,
    page: PageParams,
    county_code: str | None = None,
    poor_on_date: dt.date | None = None,
    registered: bool | None = None,
    q: str | None = None,
) -> tuple[list[Household], str | None]:
    """Households in the official's regions (registered ones, and the unregistered ones
    cooperatives added there), optionally of one county, poor on a day, or matching `q`."""
    stmt = select(Household).where(official.county_clause())
    if county_code:
        stmt = stmt.where(Household.county_code == county_code)
    if poor_on_date is not None:
        stmt = stmt.where(poor_on(Household.id.expression, literal(poor_on_date, Date())))
    if registered is not None:
        stmt = stmt.where(
            Household.registry_id.is_not(None) if registered else Household.registry_id.is_(None)
        )
    if q:
        stmt = stmt.where(
            or_(
                Household.registry_id.startswith(q, autoescape=True),
                # not the head's name: matching it would confirm a name without a logged reveal
                Household.village.contains(q, autoescape=True),
            )
        )
    return await paginate(session, stmt, page, [Household.created_at, Household.id])


async def get_in_scope(
    session: AsyncSession, *, official: Official, household_id: uuid.UUID
) -> Household:
    """404 for households outside the official's regions: they are not there for them."""
    household = await session.get(Household, household_id)
    if household is None or not official.covers(household.county_code):
        raise NotFound("No such household in your regions.")
    return household


async def poor_periods(session: AsyncSession, household_id: uuid.UUID) -> list[PoorStatusPeriod]:
    rows = await session.scalars(
        select(PoorStatusPeriod)
        .where(PoorStatusPeriod.household_id == household_id)
        .order_by(PoorStatusPeriod.valid_from)
    )
    return list(rows)


async def memberships_of(
    session: AsyncSession, household_id: uuid.UUID, *, cooperative_id: uuid.UUID | None = None
) -> list[CooperativeMember]:
    stmt = select(CooperativeMember).where(CooperativeMember.household_id == household_id)
    if cooperative_id is not None:
        stmt = stmt.where(CooperativeMember.cooperative_id == cooperative_id)
    return list(await session.scalars(stmt.order_by(CooperativeMember.joined_on)))


async def reveal(
    session: AsyncSession, *, official: Official, household_id: uuid.UUID, reason: str
) -> tuple[Household, PersonalDataReveal]:
    """The unmasked household for an official in scope; the reveal is logged first."""
    household = await get_in_scope(session, official=official, household_id=household_id)
    organisation_id = official.organisation_for(household.county_code)
    if official.user_id is None or organisation_id is None:  # pragma: no cover - API only
        raise Forbidden("Only a signed-in official may reveal personal data.")
    logged = PersonalDataReveal(
        household_id=household.id,
        user_id=official.user_id,
        organisation_id=organisation_id,
        reason=reason,
        # the moment of the reveal, not the transaction's start as now() would give
        revealed_at=utcnow(),
    )
    session.add(logged)
    await session.flush()
    await session.refresh(logged)
    return household, logged


async def list_reveals(
    session: AsyncSession, *, official: Official, household_id: uuid.UUID, page: PageParams
) -> tuple[list[PersonalDataReveal], str | None]:
    await get_in_scope(session, official=official, household_id=household_id)
    stmt = select(PersonalDataReveal).where(PersonalDataReveal.household_id == household_id)
    return await paginate(
        session,
        stmt,
        page,
        [PersonalDataReveal.revealed_at, PersonalDataReveal.id],
        descending=True,
    )


# ---------------------------------------------------------------- cooperatives' members


@dataclass(frozen=True)
class Member:
    """One membership of a household in a cooperative, with the registry's word on poverty."""

    membership: CooperativeMember
    household: Household
    poor: bool
    as_of: dt.date


def _require_verified(cooperative: Organisation) -> None:
    if cooperative.verification_status != "verified":
        raise Forbidden(
            f"{cooperative.name_zh} is not verified yet; it may keep member households once "
            "the platform has verified it.",
            code="not_verified",
        )


async def _members(
    session: AsyncSession, memberships: Sequence[CooperativeMember], as_of: dt.date
) -> list[Member]:
    ids = {m.household_id for m in memberships}
    rows = await session.execute(
        select(Household, poor_on(Household.id.expression, literal(as_of, Date()))).where(
            Household.id.in_(ids)
        )
    )
    found = {household.id: (household, bool(poor)) for household, poor in rows}
    return [Member(m, *found[m.household_id], as_of) for m in memberships]


async def list_members(
    session: AsyncSession, *, cooperative_id: uuid.UUID, page: PageParams, on: dt.date | None
) -> tuple[list[Member], str | None]:
    """Memberships (all, or those on the day `on`), newest last; `poor` as of `on` or today."""
    stmt = select(CooperativeMember).where(CooperativeMember.cooperative_id == cooperative_id)
    if on is not None:
        stmt = stmt.where(_member_on(on))
    memberships, cursor = await paginate(
        session, stmt, page, [CooperativeMember.created_at, CooperativeMember.id]
    )
    return await _members(session, memberships, on or china_today()), cursor


async def member_household(
    session: AsyncSession, *, cooperative_id: uuid.UUID, household_id: uuid.UUID
) -> tuple[Household, list[CooperativeMember], bool]:
    """A household that is or was a member, its memberships here, and whether poor today;
    404 for any other household."""
    memberships = await memberships_of(session, household_id, cooperative_id=cooperative_id)
    household = await session.get(Household, household_id) if memberships else None
    if household is None:
        raise NotFound("No such member household in this cooperative.")
    return (
        household,
        memberships,
        await is_poor_on(session, household_id=household_id, on=china_today()),
    )


def _check_dates(joined_on: dt.date, left_on: dt.date | None) -> None:
    if left_on is not None and left_on < joined_on:
        raise Invalid.field("left_on", "left_on cannot be before joined_on.")


def _label(household: Household) -> str:
    return household.registry_id or f"{mask_name(household.head_name)} ({household.village})"


async def _add_membership(
    session: AsyncSession,
    *,
    cooperative_id: uuid.UUID,
    household: Household,
    joined_on: dt.date,
    left_on: dt.date | None,
) -> Member:
    _check_dates(joined_on, left_on)
    clash = await session.scalar(
        select(CooperativeMember)
        .where(
            CooperativeMember.cooperative_id == cooperative_id,
            CooperativeMember.household_id == household.id,
            CooperativeMember.joined_on <= (left_on or dt.date.max),
            or_(CooperativeMember.left_on.is_(None), CooperativeMember.left_on >= joined_on),
        )
        .limit(1)
    )

    def overlap(existing: CooperativeMember | None) -> Conflict:
        when = (
            f" (from {existing.joined_on.isoformat()} until "
            f"{existing.left_on.isoformat() if existing.left_on else 'now, open-ended'})"
            if existing
            else ""
        )
        return Conflict(
            f"Household {_label(household)} is already a member of this cooperative{when}; "
            "memberships of one household may not overlap. End that membership first, or "
            "choose dates outside it.",
            code="membership_overlap",
        )

    if clash is not None:
        raise overlap(clash)
    membership = CooperativeMember(
        cooperative_id=cooperative_id,
        household_id=household.id,
        joined_on=joined_on,
        left_on=left_on,
    )
    try:
        # the exclusion constraint still guards against a concurrent link of the same household
        async with session.begin_nested():
            session.add(membership)
            await session.flush()
    except IntegrityError as exc:
        raise overlap(None) from exc
    await session.refresh(membership)
    return (await _members(session, [membership], china_today()))[0]


async def link_registered(
    session: AsyncSession,
    *,
    cooperative: Organisation,
    registry_id: str,
    joined_on: dt.date,
    left_on: dt.date | None,
) -> Member:
    """Make a registered household a member; its poor status stays the registry's."""
    _require_verified(cooperative)
    household = await session.scalar(select(Household).where(Household.registry_id == registry_id))
    # A cooperative sources from its own prefecture. Unknown ids and households elsewhere get
    # the same answer, so that the registry cannot be probed from outside.
    area = cooperative.region_code[:4] + "00"
    if household is None or not regions_service.in_scope(household.county_code, [area]):
        raise Invalid.field(
            "registry_id",
            f"No registered household with the registry id {registry_id} lives in the "
            "cooperative's prefecture.",
            code="unknown_registry_id",
        )
    return await _add_membership(
        session,
        cooperative_id=cooperative.id,
        household=household,
        joined_on=joined_on,
        left_on=left_on,
    )


async def add_unregistered(
    session: AsyncSession,
    *,
    cooperative: Organisation,
    head_name: str,
    village: str,
    phone: str | None,
    county_code: str | None,
    joined_on: dt.date,
    left_on: dt.date | None,
) -> Member:
    """A household the registry does not list: a member, never poor (it has no periods and
    nothing but the registry import ever writes one)."""
    _require_verified(cooperative)
    _check_dates(joined_on, left_on)
    code = county_code or cooperative.region_code
    region = await regions_service.require_region(session, code, field="county_code")
    if region.level != "county":
        raise Invalid.field(
            "county_code",
            f"{region.name_zh} is not a county; name the household's county.",
            code="not_a_county",
        )
    household = Household(
        registry_id=None,
        added_by_cooperative_id=cooperative.id,
        county_code=code,
        head_name=head_name,
        phone=phone,
        village=village,
    )
    session.add(household)
    await session.flush()
    return await _add_membership(
        session,
        cooperative_id=cooperative.id,
        household=household,
        joined_on=joined_on,
        left_on=left_on,
    )


async def end_membership(
    session: AsyncSession,
    *,
    cooperative: Organisation,
    household_id: uuid.UUID,
    left_on: dt.date,
) -> Member:
    """End (or shorten) the membership that covers `left_on`: its last day becomes `left_on`."""
    _require_verified(cooperative)
    memberships = await memberships_of(session, household_id, cooperative_id=cooperative.id)
    if not memberships:
        raise NotFound("No such member household in this cooperative.")
    covering = [
        m
        for m in memberships
        if m.joined_on <= left_on and (m.left_on is None or left_on <= m.left_on)
    ]
    if not covering:
        raise Invalid.field(
            "left_on",
            f"The household is not a member on {left_on.isoformat()}; memberships: "
            + ", ".join(
                f"{m.joined_on.isoformat()}..{m.left_on.isoformat() if m.left_on else ''}"
                for m in memberships
            ),
            code="not_a_member",
        )
    membership = covering[0]
    membership.left_on = left_on
    await session.flush()
    return (await _members(session, [membership], china_today()))[0]
