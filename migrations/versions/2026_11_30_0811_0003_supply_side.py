"""supply side: households and the registry, catalog, lots and the sourcing ledger, listings
and the stock ledger

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:11:13.238174
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CATEGORIES = [
    # code, name_zh, name_en, position
    ("fresh_fruit", "新鲜水果", "Fresh fruit", 10),
    ("dried_fruit_nuts", "干果坚果", "Dried fruit and nuts", 20),
    ("grains", "粮食杂粮", "Grains and small grains", 30),
    ("flour_noodles", "面粉面条", "Flour and noodles", 40),
    ("meat", "肉类", "Meat", 50),
    ("vegetables", "蔬菜", "Vegetables", 60),
    ("tea", "茶叶", "Tea", 70),
    ("edible_oil", "食用油", "Edible oil", 80),
    ("eggs_poultry", "禽蛋", "Eggs and poultry", 90),
    ("honey_specialties", "蜂蜜特产", "Honey and specialties", 100),
]

APPEND_ONLY = [
    """
    CREATE FUNCTION sourcing_record_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'sourcing records are append-only: % is refused; append a reversal',
            TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE TRIGGER sourcing_record_no_update_delete BEFORE UPDATE OR DELETE ON sourcing_record
        FOR EACH ROW EXECUTE FUNCTION sourcing_record_append_only()
    """,
    """
    CREATE TRIGGER sourcing_record_no_truncate BEFORE TRUNCATE ON sourcing_record
        FOR EACH STATEMENT EXECUTE FUNCTION sourcing_record_append_only()
    """,
]


def upgrade() -> None:
    # gist exclusion constraints on (uuid =, daterange &&) need btree_gist
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.create_table(
        "product_category",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name_zh", sa.String(length=50), nullable=False),
        sa.Column("name_en", sa.String(length=80), nullable=False),
        sa.Column("parent_code", sa.String(length=40), nullable=True),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_code"],
            ["product_category.code"],
            name=op.f("fk_product_category_parent_code_product_category"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_product_category")),
    )
    op.create_table(
        "sourcing_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_sourcing_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sourcing_chain_head")),
    )
    op.create_table(
        "household",
        sa.Column("registry_id", sa.String(length=40), nullable=True),
        sa.Column("county_code", sa.String(length=6), nullable=False),
        sa.Column("head_name", sa.String(length=100), nullable=False),
        sa.Column("id_number_hash", sa.LargeBinary(), nullable=True),
        sa.Column("id_number_last4", sa.String(length=4), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("village", sa.String(length=100), nullable=True),
        sa.Column("registry_organisation_id", sa.Uuid(), nullable=True),
        sa.Column("added_by_cooperative_id", sa.Uuid(), nullable=True),
        sa.Column("content_hash", sa.LargeBinary(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "id_number_last4 ~ '^[0-9Xx]{4}$'", name=op.f("ck_household_last4_format")
        ),
        sa.CheckConstraint(
            "(registry_id IS NULL) = (added_by_cooperative_id IS NOT NULL)",
            name=op.f("ck_household_registered_or_added"),
        ),
        sa.ForeignKeyConstraint(
            ["added_by_cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_household_added_by_cooperative_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["county_code"], ["region.code"], name=op.f("fk_household_county_code_region")
        ),
        sa.ForeignKeyConstraint(
            ["registry_organisation_id"],
            ["organisation.id"],
            name=op.f("fk_household_registry_organisation_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_household")),
        sa.UniqueConstraint("id_number_hash", name=op.f("uq_household_id_number_hash")),
        sa.UniqueConstraint("registry_id", name=op.f("uq_household_registry_id")),
    )
    op.create_index(
        op.f("ix_household_added_by_cooperative_id"),
        "household",
        ["added_by_cooperative_id"],
        unique=False,
    )
    op.create_index(op.f("ix_household_county_code"), "household", ["county_code"], unique=False)
    op.create_table(
        "product",
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("category_code", sa.String(length=40), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("regional_brand", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("box_net_weight_g", sa.Integer(), nullable=True),
        sa.Column("shelf_life_days", sa.Integer(), nullable=False),
        sa.Column("storage_class", sa.String(length=8), nullable=False),
        sa.Column("image_urls", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(unit = 'box') = (box_net_weight_g IS NOT NULL) AND "
            "(box_net_weight_g IS NULL OR box_net_weight_g > 0)",
            name=op.f("ck_product_box_has_net_weight"),
        ),
        sa.CheckConstraint(
            "storage_class IN ('ambient', 'chilled', 'frozen')",
            name=op.f("ck_product_storage_class"),
        ),
        sa.CheckConstraint("unit IN ('kg', 'jin', 'piece', 'box')", name=op.f("ck_product_unit")),
        sa.CheckConstraint("shelf_life_days > 0", name=op.f("ck_product_shelf_life_positive")),
        sa.ForeignKeyConstraint(
            ["category_code"],
            ["product_category.code"],
            name=op.f("fk_product_category_code_product_category"),
        ),
        sa.ForeignKeyConstraint(
            ["cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_product_cooperative_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product")),
    )
    op.create_index(op.f("ix_product_category_code"), "product", ["category_code"], unique=False)
    op.create_index(
        "ix_product_cooperative_created",
        "product",
        ["cooperative_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "certification",
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("certificate_number", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('green_food', 'organic', 'pollution_free', 'gi')",
            name=op.f("ck_certification_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_certification_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certification")),
    )
    op.create_index(
        op.f("ix_certification_product_id"), "certification", ["product_id"], unique=False
    )
    op.create_table(
        "cooperative_member",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("joined_on", sa.Date(), nullable=False),
        sa.Column("left_on", sa.Date(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        postgresql.ExcludeConstraint(
            (sa.column("cooperative_id"), "="),
            (sa.column("household_id"), "="),
            (sa.text("daterange(joined_on, left_on, '[]')"), "&&"),
            using="gist",
            name="ex_cooperative_member_no_overlap",
        ),
        sa.CheckConstraint(
            "left_on IS NULL OR left_on >= joined_on", name=op.f("ck_cooperative_member_ordered")
        ),
        sa.ForeignKeyConstraint(
            ["cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_cooperative_member_cooperative_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
            name=op.f("fk_cooperative_member_household_id_household"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cooperative_member")),
    )
    op.create_index(
        op.f("ix_cooperative_member_cooperative_id"),
        "cooperative_member",
        ["cooperative_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_cooperative_member_household_id"),
        "cooperative_member",
        ["household_id"],
        unique=False,
    )
    op.create_table(
        "lot",
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("trace_code", sa.String(length=24), nullable=False),
        sa.Column("harvest_date", sa.Date(), nullable=True),
        sa.Column("production_date", sa.Date(), nullable=True),
        sa.Column("grade", sa.String(length=40), nullable=True),
        sa.Column("storage_place", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_lot_cooperative_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_lot_product_id_product"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lot")),
        sa.UniqueConstraint("trace_code", name=op.f("uq_lot_trace_code")),
    )
    op.create_index(
        "ix_lot_cooperative_created", "lot", ["cooperative_id", "created_at", "id"], unique=False
    )
    op.create_index(op.f("ix_lot_product_id"), "lot", ["product_id"], unique=False)
    op.create_table(
        "personal_data_reveal",
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "revealed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
            name=op.f("fk_personal_data_reveal_household_id_household"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_personal_data_reveal_organisation_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_personal_data_reveal_user_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_personal_data_reveal")),
    )
    op.create_index(
        "ix_personal_data_reveal_household",
        "personal_data_reveal",
        ["household_id", "revealed_at"],
        unique=False,
    )
    op.create_table(
        "poor_status_period",
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        postgresql.ExcludeConstraint(
            (sa.column("household_id"), "="),
            (sa.text("daterange(valid_from, valid_until, '[]')"), "&&"),
            using="gist",
            name="ex_poor_status_period_no_overlap",
        ),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until >= valid_from",
            name=op.f("ck_poor_status_period_ordered"),
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
            name=op.f("fk_poor_status_period_household_id_household"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poor_status_period")),
    )
    op.create_index(
        op.f("ix_poor_status_period_household_id"),
        "poor_status_period",
        ["household_id"],
        unique=False,
    )
    op.create_table(
        "listing",
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("sale_mode", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="draft", nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("unit_size", sa.BigInteger(), nullable=False),
        sa.Column("min_order_quantity", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("quantity_listed", sa.BigInteger(), nullable=False),
        sa.Column("quantity_available", sa.BigInteger(), nullable=False),
        sa.Column("quantity_reserved", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("quantity_sold", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("delivery_terms", sa.String(length=10), nullable=False),
        sa.Column("pickup_hub", sa.String(length=200), nullable=True),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("auction_closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reserve_price_fen", sa.BigInteger(), nullable=True),
        sa.Column("certification_ids", sa.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(sale_mode = 'auction') = (auction_closes_at IS NOT NULL)",
            name=op.f("ck_listing_auction_close"),
        ),
        sa.CheckConstraint(
            "delivery_terms IN ('pickup', 'delivered')", name=op.f("ck_listing_delivery_terms")
        ),
        sa.CheckConstraint(
            "sale_mode = 'auction' OR reserve_price_fen IS NULL",
            name=op.f("ck_listing_reserve_only_auction"),
        ),
        sa.CheckConstraint(
            "sale_mode IN ('fixed', 'negotiable', 'auction')", name=op.f("ck_listing_sale_mode")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'sold_out', 'closed')",
            name=op.f("ck_listing_status"),
        ),
        sa.CheckConstraint("min_order_quantity >= 1", name=op.f("ck_listing_min_order_positive")),
        sa.CheckConstraint(
            "quantity_available >= 0", name=op.f("ck_listing_available_not_negative")
        ),
        sa.CheckConstraint(
            "quantity_listed = quantity_available + quantity_reserved + quantity_sold",
            name=op.f("ck_listing_stock_balances"),
        ),
        sa.CheckConstraint("quantity_reserved >= 0", name=op.f("ck_listing_reserved_not_negative")),
        sa.CheckConstraint("quantity_sold >= 0", name=op.f("ck_listing_sold_not_negative")),
        sa.CheckConstraint("unit_price_fen > 0", name=op.f("ck_listing_price_positive")),
        sa.CheckConstraint("unit_size > 0", name=op.f("ck_listing_unit_size_positive")),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until > valid_from", name=op.f("ck_listing_window")
        ),
        sa.ForeignKeyConstraint(
            ["cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_listing_cooperative_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["lot.id"], name=op.f("fk_listing_lot_id_lot"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_listing_product_id_product"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listing")),
    )
    op.create_index(
        "ix_listing_cooperative_created",
        "listing",
        ["cooperative_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(op.f("ix_listing_lot_id"), "listing", ["lot_id"], unique=False)
    op.create_index(
        "ix_listing_status_published", "listing", ["status", "published_at"], unique=False
    )
    op.create_table(
        "sourcing_record",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("reverses_seq", sa.BigInteger(), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("purchase_date", sa.Date(), nullable=False),
        sa.Column("evidence_ref", sa.String(length=100), nullable=True),
        sa.Column("evidence_url", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_by_id", sa.Uuid(), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint(
            "(kind = 'purchase' AND quantity > 0 AND amount_fen >= 0 AND reverses_seq IS NULL)"
            " OR (kind = 'reversal' AND quantity < 0 AND amount_fen <= 0"
            " AND reverses_seq IS NOT NULL)",
            name=op.f("ck_sourcing_record_signs"),
        ),
        sa.CheckConstraint(
            "kind IN ('purchase', 'reversal')", name=op.f("ck_sourcing_record_kind")
        ),
        sa.CheckConstraint(
            "octet_length(hash) = 32 AND octet_length(prev_hash) = 32",
            name=op.f("ck_sourcing_record_hashes"),
        ),
        sa.CheckConstraint(
            "unit_price_fen >= 0", name=op.f("ck_sourcing_record_price_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_sourcing_record_cooperative_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
            name=op.f("fk_sourcing_record_household_id_household"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["lot.id"], name=op.f("fk_sourcing_record_lot_id_lot"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["user_account.id"],
            name=op.f("fk_sourcing_record_recorded_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_seq"],
            ["sourcing_record.seq"],
            name=op.f("fk_sourcing_record_reverses_seq_sourcing_record"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_sourcing_record")),
        sa.UniqueConstraint("hash", name=op.f("uq_sourcing_record_hash")),
        sa.UniqueConstraint("id", name=op.f("uq_sourcing_record_id")),
    )
    op.create_index(
        "ix_sourcing_record_household", "sourcing_record", ["household_id"], unique=False
    )
    op.create_index("ix_sourcing_record_lot", "sourcing_record", ["lot_id", "seq"], unique=False)
    op.create_index("uq_sourcing_record_reverses", "sourcing_record", ["reverses_seq"], unique=True)
    op.create_table(
        "listing_price_tier",
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("min_quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("min_quantity >= 2", name=op.f("ck_listing_price_tier_min_quantity")),
        sa.CheckConstraint("unit_price_fen > 0", name=op.f("ck_listing_price_tier_price_positive")),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.id"],
            name=op.f("fk_listing_price_tier_listing_id_listing"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("listing_id", "min_quantity", name=op.f("pk_listing_price_tier")),
    )
    op.create_table(
        "stock_movement",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("available_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('list', 'reserve', 'release', 'sell', 'adjust', 'close')",
            name=op.f("ck_stock_movement_kind"),
        ),
        sa.CheckConstraint("quantity <> 0", name=op.f("ck_stock_movement_not_zero")),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_stock_movement_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.id"],
            name=op.f("fk_stock_movement_listing_id_listing"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_movement")),
    )
    op.create_index(
        "ix_stock_movement_listing", "stock_movement", ["listing_id", "id"], unique=False
    )
    for statement in APPEND_ONLY:
        op.execute(statement)
    # the genesis: the first record chains onto 32 zero bytes
    op.execute(
        "INSERT INTO sourcing_chain_head (id, last_seq, last_hash) "
        "VALUES (1, 0, decode(repeat('00', 32), 'hex'))"
    )
    category = sa.table(
        "product_category",
        sa.column("code", sa.String),
        sa.column("name_zh", sa.String),
        sa.column("name_en", sa.String),
        sa.column("position", sa.Integer),
    )
    op.bulk_insert(
        category,
        [
            {"code": c, "name_zh": zh, "name_en": en, "position": pos}
            for c, zh, en, pos in CATEGORIES
        ],
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER sourcing_record_no_truncate ON sourcing_record")
    op.execute("DROP TRIGGER sourcing_record_no_update_delete ON sourcing_record")
    op.execute("DROP FUNCTION sourcing_record_append_only()")
    op.drop_index("ix_stock_movement_listing", table_name="stock_movement")
    op.drop_table("stock_movement")
    op.drop_table("listing_price_tier")
    op.drop_index("uq_sourcing_record_reverses", table_name="sourcing_record")
    op.drop_index("ix_sourcing_record_lot", table_name="sourcing_record")
    op.drop_index("ix_sourcing_record_household", table_name="sourcing_record")
    op.drop_table("sourcing_record")
    op.drop_index("ix_listing_status_published", table_name="listing")
    op.drop_index(op.f("ix_listing_lot_id"), table_name="listing")
    op.drop_index("ix_listing_cooperative_created", table_name="listing")
    op.drop_table("listing")
    op.drop_index(op.f("ix_poor_status_period_household_id"), table_name="poor_status_period")
    op.drop_table("poor_status_period")
    op.drop_index("ix_personal_data_reveal_household", table_name="personal_data_reveal")
    op.drop_table("personal_data_reveal")
    op.drop_index(op.f("ix_lot_product_id"), table_name="lot")
    op.drop_index("ix_lot_cooperative_created", table_name="lot")
    op.drop_table("lot")
    op.drop_index(op.f("ix_cooperative_member_household_id"), table_name="cooperative_member")
    op.drop_index(op.f("ix_cooperative_member_cooperative_id"), table_name="cooperative_member")
    op.drop_table("cooperative_member")
    op.drop_index(op.f("ix_certification_product_id"), table_name="certification")
    op.drop_table("certification")
    op.drop_index("ix_product_cooperative_created", table_name="product")
    op.drop_index(op.f("ix_product_category_code"), table_name="product")
    op.drop_table("product")
    op.drop_index(op.f("ix_household_county_code"), table_name="household")
    op.drop_index(op.f("ix_household_added_by_cooperative_id"), table_name="household")
    op.drop_table("household")
    op.drop_table("sourcing_chain_head")
    op.drop_table("product_category")
