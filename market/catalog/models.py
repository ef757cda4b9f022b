"""Product categories, products (units, storage, shelf life) and certifications."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ARRAY, CheckConstraint, Date, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base, CreatedAtMixin, IdMixin

UNITS = ("kg", "jin", "piece", "box")
STORAGE_CLASSES = ("ambient", "chilled", "frozen")
CERTIFICATION_KINDS = ("green_food", "organic", "pollution_free", "gi")


class ProductCategory(Base):
    __tablename__ = "product_category"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(50))
    name_en: Mapped[str] = mapped_column(String(80))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("product_category.code"))
    position: Mapped[int] = mapped_column(server_default="0")


class Product(IdMixin, CreatedAtMixin, Base):
    """What a cooperative sells. Quantities of a product are integers in its base unit:
    grams for kg, jin and boxes (a box has a net weight), pieces for `piece`."""

    __tablename__ = "product"
    __table_args__ = (
        CheckConstraint(f"unit IN {UNITS!r}", name="unit"),
        CheckConstraint(f"storage_class IN {STORAGE_CLASSES!r}", name="storage_class"),
        CheckConstraint("shelf_life_days > 0", name="shelf_life_positive"),
        CheckConstraint(
            "(unit = 'box') = (box_net_weight_g IS NOT NULL) AND "
            "(box_net_weight_g IS NULL OR box_net_weight_g > 0)",
            name="box_has_net_weight",
        ),
        Index("ix_product_cooperative_created", "cooperative_id", "created_at", "id"),
    )

    cooperative_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="RESTRICT")
    )
    category_code: Mapped[str] = mapped_column(ForeignKey("product_category.code"), index=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    regional_brand: Mapped[str | None] = mapped_column(
        String(100), doc="Regional public brand or GI name, e.g. 靖远枸杞"
    )
    unit: Mapped[str] = mapped_column(String(8))
    box_net_weight_g: Mapped[int | None]
    shelf_life_days: Mapped[int]
    storage_class: Mapped[str] = mapped_column(String(8))
    image_urls: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    description: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class Certification(IdMixin, CreatedAtMixin, Base):
    """A certificate held for a product; valid through `valid_until` (inclusive)."""

    __tablename__ = "certification"
    __table_args__ = (CheckConstraint(f"kind IN {CERTIFICATION_KINDS!r}", name="kind"),)

    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("product.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    certificate_number: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(200))
    valid_until: Mapped[dt.date] = mapped_column(Date)
