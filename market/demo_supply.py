"""Demo data of the supply side: the Baiyin registry, member households, products with
certificates, lots with realistic sourcing records, and listings in all three sale modes.

Everything goes through the services (the registry through its CSV import), so the demo
exercises the same paths as the API."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from market.catalog import service as catalog_service
from market.catalog.schemas import CertificationCreate, ProductCreate
from market.db import utcnow
from market.households import service as households_service
from market.listings import service as listings_service
from market.listings.schemas import ListingCreate
from market.organisations.models import Organisation
from market.sourcing import service as sourcing_service

POOR_SINCE = "2015-03-01"
EXITED_ON = "2025-12-31"  # exited poverty last year: no longer poor for 2026 purchases


@dataclass(frozen=True)
class Supplier:
    name: str
    status: str  # poor | exited | never
    kilos: int  # what the household sells into the demo lot (the product's base unit × 1000)
    price_fen: int  # per kg (or per piece)


@dataclass(frozen=True)
class Supply:
    cooperative: str  # the cooperative's name_zh in market.demo
    village: str
    product: dict[str, object]
    certificates: list[dict[str, object]]
    suppliers: list[Supplier]
    purchase_date: dt.date
    harvest_date: dt.date
    listing: dict[str, object]


def _s(name: str, status: str, kilos: int, price: int) -> Supplier:
    return Supplier(name, status, kilos, price)


SUPPLIES = [
    Supply(
        cooperative="靖远县枸杞种植专业合作社",
        village="东湾镇三滩村",
        product={
            "name_zh": "靖远枸杞 特级干果",
            "name_en": "Jingyuan wolfberry, special grade, dried",
            "category_code": "dried_fruit_nuts",
            "regional_brand": "靖远枸杞",
            "unit": "kg",
            "shelf_life_days": 540,
            "storage_class": "ambient",
            "description": "黄河灌区种植，自然晾晒，颗粒饱满，每 50 克 280 粒以内。",
        },
        certificates=[
            {
                "kind": "gi",
                "certificate_number": "AGI02398",
                "issuer": "农业农村部",
                "valid_until": dt.date(2030, 12, 31),
            },
            {
                "kind": "green_food",
                "certificate_number": "LB-15-2407620421",
                "issuer": "中国绿色食品发展中心",
                "valid_until": dt.date(2027, 7, 31),
            },
        ],
        # poor households supply about 60 % of the value
        suppliers=[
            _s("张桂兰", "poor", 420, 4200),
            _s("李永福", "poor", 380, 4200),
            _s("王秀英", "poor", 300, 4300),
            _s("马占林", "poor", 260, 4200),
            _s("陈玉梅", "exited", 250, 4200),
            _s("杨德明", "exited", 230, 4100),
            _s("刘建军", "never", 210, 4200),
            _s("赵春花", "never", 180, 4200),
        ],
        purchase_date=dt.date(2026, 8, 20),
        harvest_date=dt.date(2026, 8, 12),
        listing={
            "sale_mode": "fixed",
            "unit_price_fen": 6800,
            "quantity": 1500,
            "min_order_quantity": 20,
            "delivery_terms": "pickup",
            "pickup_hub": "靖远县电子商务公共服务中心仓库",
            "price_tiers": [
                {"min_quantity": 100, "unit_price_fen": 6500},
                {"min_quantity": 500, "unit_price_fen": 6200},
            ],
        },
    ),
    Supply(
        cooperative="景泰县和尚头面粉加工专业合作社",
        village="上沙沃镇",
        product={
            "name_zh": "景泰和尚头全麦面粉 5kg",
            "name_en": "Jingtai monk's-head wheat flour, 5 kg",
            "category_code": "flour_noodles",
            "regional_brand": "景泰和尚头",
            "unit": "box",
            "box_net_weight_g": 5000,
            "shelf_life_days": 270,
            "storage_class": "ambient",
            "description": "旱地和尚头小麦石磨研磨，无添加。",
        },
        certificates=[
            {
                "kind": "pollution_free",
                "certificate_number": "WGH-2023-0412",
                "issuer": "甘肃省农产品质量安全中心",
                "valid_until": dt.date(2026, 6, 30),
            },
        ],
        # about 10 % of the value from poor households
        suppliers=[
            _s("何永强", "poor", 900, 380),
            _s("孙立新", "exited", 2200, 360),
            _s("周海燕", "never", 2400, 360),
            _s("吴国栋", "never", 2100, 360),
            _s("郑兰英", "never", 1500, 370),
        ],
        purchase_date=dt.date(2026, 7, 25),
        harvest_date=dt.date(2026, 7, 10),
        listing={
            "sale_mode": "negotiable",
            "unit_price_fen": 4800,
            "quantity": 1200,
            "min_order_quantity": 50,
            "delivery_terms": "delivered",
        },
    ),
    Supply(
        cooperative="会宁县黑瓜子种植专业合作社",
        village="郭城驿镇",
        product={
            "name_zh": "会宁黑瓜子 原味",
            "name_en": "Huining black melon seeds",
            "category_code": "dried_fruit_nuts",
            "regional_brand": "会宁黑瓜子",
            "unit": "jin",
            "shelf_life_days": 300,
            "storage_class": "ambient",
        },
        certificates=[],
        suppliers=[
            _s("牛志刚", "poor", 600, 2600),
            _s("康玉珍", "poor", 450, 2600),
            _s("白建华", "exited", 500, 2500),
            _s("高文彬", "never", 700, 2500),
        ],
        purchase_date=dt.date(2026, 9, 5),
        harvest_date=dt.date(2026, 9, 1),
        listing={
            "sale_mode": "auction",
            "unit_price_fen": 1500,
            "quantity": 3000,
            "min_order_quantity": 200,
            "delivery_terms": "pickup",
            "pickup_hub": "会宁县郭城驿镇合作社仓库",
            "reserve_price_fen": 1600,
        },
    ),
    Supply(
        cooperative="会宁县小杂粮产销专业合作社",
        village="丁家沟镇",
        product={
            "name_zh": "会宁小米 黄小米",
            "name_en": "Huining foxtail millet",
            "category_code": "grains",
            "unit": "kg",
            "shelf_life_days": 365,
            "storage_class": "ambient",
        },
        certificates=[],
        suppliers=[
            _s("冯国庆", "poor", 800, 900),
            _s("宋春燕", "exited", 650, 900),
            _s("唐建平", "never", 700, 880),
        ],
        purchase_date=dt.date(2026, 10, 8),
        harvest_date=dt.date(2026, 9, 28),
        listing={
            "sale_mode": "fixed",
            "unit_price_fen": 1380,
            "quantity": 1800,
            "min_order_quantity": 50,
            "delivery_terms": "delivered",
        },
    ),
    Supply(
        cooperative="靖远县小口大枣种植专业合作社",
        village="北湾镇",
        product={
            "name_zh": "靖远小口大枣 一级",
            "name_en": "Jingyuan jujube, first grade",
            "category_code": "dried_fruit_nuts",
            "regional_brand": "靖远小口大枣",
            "unit": "kg",
            "shelf_life_days": 365,
            "storage_class": "ambient",
        },
        certificates=[],
        suppliers=[
            _s("蒋玉兰", "poor", 500, 1600),
            _s("沈德胜", "never", 650, 1600),
            _s("韩小梅", "exited", 400, 1550),
        ],
        purchase_date=dt.date(2026, 10, 15),
        harvest_date=dt.date(2026, 10, 5),
        listing={
            "sale_mode": "negotiable",
            "unit_price_fen": 2200,
            "quantity": 1200,
            "min_order_quantity": 30,
            "delivery_terms": "pickup",
            "pickup_hub": "靖远县北湾镇枣业合作社仓库",
        },
    ),
]


def _id_number(county_code: str, index: int) -> str:
    """A well-formed (checksummed) demo ID-card number; not a real person's."""
    birth = f"{1958 + index % 30}{(index % 12) + 1:02d}{(index % 27) + 1:02d}"
    first17 = f"{county_code}{birth}{index % 900 + 100:03d}"
    return first17 + households_service.id_check_character(first17)


def registry_csv(cooperatives: dict[str, Organisation]) -> tuple[bytes, dict[str, str]]:
    """The registry file the bureau imports, and the registry id of each supplier's name."""
    lines = [",".join(households_service.REGISTRY_COLUMNS)]
    ids: dict[str, str] = {}
    index = 0
    for supply in SUPPLIES:
        county = cooperatives[supply.cooperative].region_code
        for supplier in supply.suppliers:
            index += 1
            registry_id = f"{county}-{index:06d}"
            ids[supplier.name] = registry_id
            phone = f"139{int(hashlib.sha256(supplier.name.encode()).hexdigest(), 16) % 10**8:08d}"
            poor_from, poor_until = {
                "poor": (POOR_SINCE, ""),
                "exited": (POOR_SINCE, EXITED_ON),
                "never": ("", ""),
            }[supplier.status]
            lines.append(
                ",".join(
                    [
                        registry_id,
                        county,
                        supplier.name,
                        _id_number(county, index),
                        phone,
                        supply.village,
                        poor_from,
                        poor_until,
                    ]
                )
            )
    return ("\n".join(lines) + "\n").encode(), ids


def steps() -> int:
    return 1 + len(SUPPLIES)


async def load(
    session: AsyncSession,
    *,
    key: bytes,
    authority_id: uuid.UUID,
    recorded_by_id: uuid.UUID | None = None,
    advance: Callable[[str], None] = lambda _: None,
) -> None:
    rows = await session.scalars(select(Organisation).where(Organisation.kind == "cooperative"))
    cooperatives = {org.name_zh: org for org in rows}
    data, registry_ids = registry_csv(cooperatives)
    official = await households_service.authority_job(session, authority_id)
    result = await households_service.import_registry(
        session, data=data, key=key, official=official
    )
    if result.errors:  # pragma: no cover - the demo file is well-formed
        raise RuntimeError(f"demo registry refused: {result.errors}")
    advance("household registry")

    for supply in SUPPLIES:
        cooperative = cooperatives[supply.cooperative]
        product = await catalog_service.create_product(
            session,
            cooperative_id=cooperative.id,
            data=ProductCreate.model_validate(supply.product).model_dump(),
        )
        for certificate in supply.certificates:
            await catalog_service.add_certification(
                session,
                product=product,
                data=CertificationCreate.model_validate(certificate).model_dump(),
            )
        lot = await sourcing_service.open_lot(
            session,
            cooperative_id=cooperative.id,
            county_code=cooperative.region_code,
            data={
                "product_id": product.id,
                "harvest_date": supply.harvest_date,
                "grade": "特级" if "特级" in str(supply.product["name_zh"]) else "一级",
                "storage_place": f"{supply.village}合作社仓库",
            },
        )
        for supplier in supply.suppliers:
            member = await households_service.link_registered(
                session,
                cooperative=cooperative,
                registry_id=registry_ids[supplier.name],
                joined_on=dt.date(2019, 3, 1),
                left_on=None,
            )
            await sourcing_service.append_purchase(
                session,
                lot=lot,
                household_id=member.household.id,
                quantity=supplier.kilos * 1000,
                unit_price_fen=supplier.price_fen,
                purchase_date=supply.purchase_date,
                evidence_ref=f"收购单 {cooperative.region_code}-{supplier.name}",
                recorded_by_id=recorded_by_id,
            )
        listing_data = dict(supply.listing)
        if listing_data["sale_mode"] == "auction":
            listing_data["auction_closes_at"] = utcnow() + dt.timedelta(days=3)
        listing_data["certification_ids"] = [
            c.id
            for c in (await catalog_service.certifications_of(session, [product.id]))[product.id]
            if catalog_service.is_valid(c)
        ]
        listing = await listings_service.create_listing(
            session,
            cooperative_id=cooperative.id,
            data=ListingCreate.model_validate({"lot_id": lot.id, **listing_data}).model_dump(),
            user_id=recorded_by_id,
        )
        await listings_service.act(
            session, listing=listing, organisation=cooperative, event="publish", user_id=None
        )
        advance(supply.cooperative)
