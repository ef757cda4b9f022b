"""Administrative regions (GB/T 2260 codes) with coordinates and the poverty-county flag."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base

LEVELS = ("province", "city", "county")


class Region(Base):
    __tablename__ = "region"
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{6}$'", name="code_format"),
        CheckConstraint("level IN ('province', 'city', 'county')", name="level"),
        Index(
            "ix_region_name_pinyin",
            "name_pinyin",
            postgresql_ops={"name_pinyin": "text_pattern_ops"},
        ),
        Index(
            "ix_region_name_initials",
            "name_initials",
            postgresql_ops={"name_initials": "text_pattern_ops"},
        ),
        Index("ix_region_name_zh", "name_zh", postgresql_ops={"name_zh": "text_pattern_ops"}),
    )

    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(64))
    short_name_zh: Mapped[str] = mapped_column(String(64))
    name_pinyin: Mapped[str] = mapped_column(String(128))
    name_initials: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(8))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("region.code"), index=True)
    longitude: Mapped[Decimal] = mapped_column(Numeric(9, 6))
    latitude: Mapped[Decimal] = mapped_column(Numeric(9, 6))
    is_poverty_county: Mapped[bool] = mapped_column(server_default="false")
    poverty_flag_updated_at: Mapped[dt.datetime | None]
