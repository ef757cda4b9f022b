"""Categories, cooperatives' products and their certifications; unit arithmetic for other domains.

Quantities of a product are integers in its base unit: grams for kg, jin and box, pieces for
piece. A certification is valid through its `valid_until` date (China time), computed on read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from market.calendar import china_today
from market.catalog.models import Certification, Product, ProductCategory
from market.db import utcnow
from market.errors import Conflict, Invalid, NotFound
from market.pagination import PageParams, paginate

# Certificates are issued with Chinese calendar dates; China keeps UTC+8 all year.
GRAMS_PER_UNIT = {"kg": 1000, "jin": 500}


# ---------------------------------------------------------------- who may act


# ---------------------------------------------------------------- categories


async def list_categories(session: AsyncSession) -> list[ProductCategory]:
    rows = await session.scalars(
        select(ProductCategory).order_by(ProductCategory.position, ProductCategory.code)
    )
    return list(rows)


async def _category_problem(session: AsyncSession, code: str) -> dict[str, str] | None:
    if await session.get(ProductCategory, code) is not None:
        return None
    return {
        "field": "category_code",
        "message": f"Unknown category {code!r}; see GET /catalog/categories.",
        "code": "unknown_category",
    }


# ---------------------------------------------------------------- units


def base_unit(product: Product) -> str:
    """What quantities of this product count: "piece" for unit piece, else "g"."""
    return "piece" if product.unit == "piece" else "g"


def unit_size(product: Product) -> int:
    """Base units in one unit of sale: kg 1000, jin 500, box its net weight, piece 1."""
    if product.unit == "piece":
        return 1
    if product.unit == "box":
        if product.box_net_weight_g is None:  # the database CHECK makes this impossible
            raise ValueError(f"box product {product.id} has no net weight")
        return product.box_net_weight_g
    return GRAMS_PER_UNIT[product.unit]


def pricing_unit(product: Product) -> int:
    """The base units a sourcing unit price refers to: per kg (1000 g) or per piece (1)."""
    return 1 if base_unit(product) == "piece" else 1000


def _unit_problems(unit: str, box_net_weight_g: int | None) -> list[dict[str, str]]:
    if unit == "box" and box_net_weight_g is None:
        message = "A box needs its net weight in grams (box_net_weight_g > 0)."
        return [{"field": "box_net_weight_g", "message": message, "code": "box_needs_weight"}]
    if unit != "box" and box_net_weight_g is not None:
        message = (
            f"Only boxes have a net weight; for unit {unit} leave box_net_weight_g out "
            "(or send null)."
        )
        return [{"field": "box_net_weight_g", "message": message, "code": "weight_only_for_box"}]
    return []


def _raise_problems(problems: list[dict[str, str]]) -> None:
    if not problems:
        return
    detail = " ".join(p["message"] for p in problems)
    code = problems[0]["code"] if len(problems) == 1 else "invalid_product"
    raise Invalid(
        detail,
        code=code,
        errors=[{"field": p["field"], "message": p["message"]} for p in problems],
    )


# ---------------------------------------------------------------- products


async def get_product(
    session: AsyncSession,
    *,
    product_id: uuid.UUID,
    cooperative_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Product:
    """A product; NotFound when missing or (with cooperative_id) another cooperative's."""
    stmt = select(Product).where(Product.id == product_id)
    if cooperative_id is not None:
        stmt = stmt.where(Product.cooperative_id == cooperative_id)
    if lock:
        stmt = stmt.with_for_update()
    product = await session.scalar(stmt)
    if product is None:
        raise NotFound("No such product in this cooperative.")
    return product


async def create_product(
    session: AsyncSession, *, cooperative_id: uuid.UUID, data: dict[str, Any]
) -> Product:
    problems = _unit_problems(data["unit"], data.get("box_net_weight_g"))
    category = await _category_problem(session, data["category_code"])
    _raise_problems([*problems, *([category] if category else [])])
    values = {**data, "image_urls": [str(url) for url in data.get("image_urls") or []]}
    product = Product(cooperative_id=cooperative_id, **values)
    session.add(product)
    await session.flush()
    await session.refresh(product)
    return product


async def list_products(
    session: AsyncSession,
    *,
    cooperative_id: uuid.UUID,
    page: PageParams,
    category_code: str | None = None,
) -> tuple[list[Product], str | None]:
    stmt = select(Product).where(Product.cooperative_id == cooperative_id)
    if category_code is not None:
        stmt = stmt.where(Product.category_code == category_code)
    return await paginate(session, stmt, page, [Product.created_at, Product.id])


async def _listed(session: AsyncSession, product_id: uuid.UUID) -> bool:
    from market.listings import service as listings_service  # listings imports this module

    return await listings_service.product_has_open_listing(session, product_id)


async def update_product(
    session: AsyncSession, product: Product, changes: dict[str, Any]
) -> Product:
    """Apply a PATCH. The base unit (grams or pieces) never changes: lots and sourcing records
    already count the product in it."""
    if not changes:
        return product
    unit = changes.get("unit", product.unit)
    box_net_weight_g = changes.get("box_net_weight_g", product.box_net_weight_g)
    problems = _unit_problems(unit, box_net_weight_g)
    if (unit == "piece") != (product.unit == "piece"):
        problems.insert(
            0,
            {
                "field": "unit",
                "message": f"A product counted in {base_unit(product)} cannot change to unit "
                f"{unit}: its lots and records count in {base_unit(product)}. Create a new "
                "product instead.",
                "code": "base_unit_fixed",
            },
        )
    if "category_code" in changes:
        category = await _category_problem(session, changes["category_code"])
        if category:
            problems.append(category)
    _raise_problems(problems)
    size_after = (
        1 if unit == "piece" else box_net_weight_g if unit == "box" else GRAMS_PER_UNIT.get(unit, 0)
    )
    if size_after != unit_size(product) and await _listed(session, product.id):
        # a listing counts its stock in units of the size it was listed with (the lot's
        # grams are committed by it); orders, freight and the public page would count another
        raise Conflict(
            f"This product is listed in units of {unit_size(product)} {base_unit(product)}; "
            "its unit of sale cannot change while a listing of it is open. Close its listings "
            "or create a new product for the new unit.",
            code="product_listed",
        )
    if "image_urls" in changes:
        changes = {**changes, "image_urls": [str(url) for url in changes["image_urls"]]}
    for name, value in changes.items():
        setattr(product, name, value)
    product.updated_at = utcnow()
    await session.flush()
    return product


# ---------------------------------------------------------------- certifications


def is_valid(certification: Certification, today: dt.date | None = None) -> bool:
    """Valid through `valid_until`, inclusive; `today` defaults to today in China."""
    return certification.valid_until >= (today or china_today())


async def add_certification(
    session: AsyncSession, *, product: Product, data: dict[str, Any]
) -> Certification:
    """Record a certificate. Renewals are new certificates; the same certificate (kind, number
    and expiry) twice is a conflict."""
    duplicate = await session.scalar(
        select(Certification.id).where(
            Certification.product_id == product.id,
            Certification.kind == data["kind"],
            Certification.certificate_number == data["certificate_number"],
            Certification.valid_until == data["valid_until"],
        )
    )
    if duplicate is not None:
        raise Conflict(
            f"Certificate {data['certificate_number']} valid until {data['valid_until']} is "
            "already recorded for this product.",
            code="duplicate_certificate",
        )
    certification = Certification(product_id=product.id, **data)
    session.add(certification)
    await session.flush()
    await session.refresh(certification)
    return certification


def _by_expiry(rows: Iterable[Certification]) -> list[Certification]:
    return sorted(rows, key=lambda c: (c.valid_until, c.created_at), reverse=True)


async def certifications_of(
    session: AsyncSession, product_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Certification]]:
    """Each product's certifications, latest expiry first; every id given is a key."""
    out: dict[uuid.UUID, list[Certification]] = {pid: [] for pid in product_ids}
    if not product_ids:
        return out
    rows = await session.scalars(
        select(Certification).where(Certification.product_id.in_(set(product_ids)))
    )
    for certification in _by_expiry(rows):
        out[certification.product_id].append(certification)
    return out


async def invalid_certification_ids(
    session: AsyncSession,
    certification_ids: list[uuid.UUID],
    today: dt.date | None = None,
    *,
    product_id: uuid.UUID | None = None,
) -> set[uuid.UUID]:
    """The ids that are expired or unknown (or, with product_id, another product's)."""
    wanted = set(certification_ids)
    if not wanted:
        return set()
    on = today or china_today()
    stmt = select(Certification.id).where(
        Certification.id.in_(wanted), Certification.valid_until >= on
    )
    if product_id is not None:
        stmt = stmt.where(Certification.product_id == product_id)
    return wanted - set(await session.scalars(stmt))
