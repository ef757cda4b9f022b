"""HTTP: the category taxonomy, a cooperative's products and their certifications."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from market.calendar import china_today
from market.catalog import service
from market.catalog.models import Certification, Product
from market.catalog.schemas import (
    CategoryRead,
    CertificationCreate,
    CertificationRead,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)
from market.deps import Idempotent, PrincipalDep, SessionDep
from market.organisations import service as organisations_service
from market.pagination import Page, PageDep
from market.routing import MarketRoute

router = APIRouter(tags=["catalog"], route_class=MarketRoute)
PRODUCTS = "/organisations/{organisation_id}/products"


def _certification(certification: Certification, today: dt.date) -> CertificationRead:
    return CertificationRead(
        id=certification.id,
        product_id=certification.product_id,
        kind=certification.kind,
        certificate_number=certification.certificate_number,
        issuer=certification.issuer,
        valid_until=certification.valid_until,
        is_valid=service.is_valid(certification, today),
        created_at=certification.created_at,
    )


def _product(product: Product, certifications: list[Certification], today: dt.date) -> ProductRead:
    return ProductRead(
        id=product.id,
        cooperative_id=product.cooperative_id,
        category_code=product.category_code,
        name_zh=product.name_zh,
        name_en=product.name_en,
        regional_brand=product.regional_brand,
        unit=product.unit,
        box_net_weight_g=product.box_net_weight_g,
        base_unit=service.base_unit(product),
        unit_size=service.unit_size(product),
        shelf_life_days=product.shelf_life_days,
        storage_class=product.storage_class,
        image_urls=list(product.image_urls),
        description=product.description,
        certifications=[_certification(c, today) for c in certifications],
        created_at=product.created_at,
        updated_at=product.updated_at,
    )


async def _product_read(session: AsyncSession, product: Product) -> ProductRead:
    certifications = await service.certifications_of(session, [product.id])
    return _product(product, certifications[product.id], china_today())


@router.get("/catalog/categories", response_model=list[CategoryRead], summary="Product categories")
async def list_categories(session: SessionDep) -> list[CategoryRead]:
    """The seeded taxonomy (新鲜水果, 干果坚果, 面粉面条, …), in display order. Public."""
    return [CategoryRead.model_validate(c) for c in await service.list_categories(session)]


@router.post(
    PRODUCTS,
    status_code=status.HTTP_201_CREATED,
    response_model=ProductRead,
    summary="Add a product (cooperative staff)",
)
async def create_product(
    organisation_id: uuid.UUID,
    body: ProductCreate,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> ProductRead:
    """Unit `box` needs `box_net_weight_g`; kg, jin and piece refuse it."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="catalog", write=True
    )
    product = await service.create_product(
        session, cooperative_id=organisation_id, data=body.model_dump()
    )
    return _product(product, [], china_today())


@router.get(PRODUCTS, response_model=Page[ProductRead], summary="A cooperative's products")
async def list_products(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    category_code: Annotated[
        str | None, Query(max_length=40, examples=["dried_fruit_nuts"])
    ] = None,
) -> Page[ProductRead]:
    """Oldest first, with their certifications."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="catalog"
    )
    rows, cursor = await service.list_products(
        session, cooperative_id=organisation_id, page=page, category_code=category_code
    )
    certifications = await service.certifications_of(session, [p.id for p in rows])
    today = china_today()
    return Page(items=[_product(p, certifications[p.id], today) for p in rows], next_cursor=cursor)


@router.get(PRODUCTS + "/{product_id}", response_model=ProductRead, summary="A product")
async def get_product(
    organisation_id: uuid.UUID, product_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ProductRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="catalog"
    )
    product = await service.get_product(
        session, product_id=product_id, cooperative_id=organisation_id
    )
    return await _product_read(session, product)


@router.patch(
    PRODUCTS + "/{product_id}",
    response_model=ProductRead,
    summary="Change a product (cooperative staff)",
)
async def update_product(
    organisation_id: uuid.UUID,
    product_id: uuid.UUID,
    body: ProductUpdate,
    principal: PrincipalDep,
    session: SessionDep,
) -> ProductRead:
    """Only the fields sent change. The unit may move between kg, jin and box, never to or
    from piece."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="catalog", write=True
    )
    product = await service.get_product(
        session, product_id=product_id, cooperative_id=organisation_id, lock=True
    )
    product = await service.update_product(session, product, body.model_dump(exclude_unset=True))
    return await _product_read(session, product)


@router.post(
    PRODUCTS + "/{product_id}/certifications",
    status_code=status.HTTP_201_CREATED,
    response_model=CertificationRead,
    summary="Record a certificate (cooperative staff)",
)
async def add_certification(
    organisation_id: uuid.UUID,
    product_id: uuid.UUID,
    body: CertificationCreate,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> CertificationRead:
    """Certificates are never edited or removed: a renewal is recorded as a new certificate,
    and an expired one simply stops showing as valid."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="catalog", write=True
    )
    product = await service.get_product(
        session, product_id=product_id, cooperative_id=organisation_id
    )
    certification = await service.add_certification(
        session, product=product, data=body.model_dump()
    )
    return _certification(certification, china_today())


@router.get(
    PRODUCTS + "/{product_id}/certifications",
    response_model=list[CertificationRead],
    summary="A product's certificates",
)
async def list_certifications(
    organisation_id: uuid.UUID, product_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> list[CertificationRead]:
    """Latest expiry first, expired ones included with `is_valid: false`."""
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="catalog"
    )
    product = await service.get_product(
        session, product_id=product_id, cooperative_id=organisation_id
    )
    certifications = await service.certifications_of(session, [product.id])
    today = china_today()
    return [_certification(c, today) for c in certifications[product.id]]
