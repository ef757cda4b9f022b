"""Plain async factories for products, certifications and scoped API keys, through the services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from market.accounts import service as accounts_service
from market.catalog import service as catalog_service
from market.catalog.models import Certification, Product
from market.organisations.models import Organisation

WOLFBERRY_BOX: dict[str, Any] = {
    "name_zh": "靖远枸杞 特级 500g 礼盒",
    "name_en": "Jingyuan wolfberry, premium, 500 g gift box",
    "category_code": "dried_fruit_nuts",
    "regional_brand": "靖远枸杞",
    "unit": "box",
    "box_net_weight_g": 500,
    "shelf_life_days": 540,
    "storage_class": "ambient",
    "image_urls": ["https://img.jingyuan-coop.cn/gouqi/tj-500g.jpg"],
    "description": "砂地种植，自然晾晒，每盒净含量500克。",
}

FLOUR_KG: dict[str, Any] = {
    "name_zh": "和尚头面粉",
    "category_code": "flour_noodles",
    "regional_brand": "景泰和尚头",
    "unit": "kg",
    "shelf_life_days": 180,
    "storage_class": "ambient",
}


async def make_product(
    session: AsyncSession, cooperative: Organisation, **overrides: Any
) -> Product:
    data = {**FLOUR_KG, **overrides}
    data.setdefault("image_urls", [])
    return await catalog_service.create_product(session, cooperative_id=cooperative.id, data=data)


async def make_certification(
    session: AsyncSession,
    product: Product,
    *,
    valid_until: dt.date,
    kind: str = "green_food",
    certificate_number: str = "LB-18-24010623456A",
    issuer: str = "中国绿色食品发展中心",
) -> Certification:
    return await catalog_service.add_certification(
        session,
        product=product,
        data={
            "kind": kind,
            "certificate_number": certificate_number,
            "issuer": issuer,
            "valid_until": valid_until,
        },
    )


async def api_key_for(session: AsyncSession, organisation: Organisation, *scopes: str) -> str:
    secret, _ = await accounts_service.create_api_key(
        session,
        organisation_id=organisation.id,
        name="ERP 同步",
        scopes=list(scopes),
        created_by_id=None,
        expires_at=None,
    )
    await session.flush()
    return secret
