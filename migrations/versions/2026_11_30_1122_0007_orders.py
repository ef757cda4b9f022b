"""orders: orders with totals that add up, one fulfilment per cooperative, lines with the
price and the lot's poor-household share frozen at sale time, shipments and tracking events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:22:33.818141
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order",
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("placed_by_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending_payment", nullable=False),
        sa.Column("source", sa.String(length=8), server_default="direct", nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="CNY", nullable=False),
        sa.Column("goods_fen", sa.BigInteger(), nullable=False),
        sa.Column("logistics_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("destination_code", sa.String(length=6), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("contact_name", sa.String(length=60), nullable=False),
        sa.Column("contact_phone", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("payment_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_reference", sa.String(length=100), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
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
        sa.CheckConstraint("source IN ('direct', 'bid', 'auction')", name=op.f("ck_order_source")),
        sa.CheckConstraint(
            "status IN ('pending_payment', 'paid', 'completed', 'cancelled', 'expired', "
            "'disputed')",
            name=op.f("ck_order_status"),
        ),
        sa.CheckConstraint("goods_fen > 0", name=op.f("ck_order_goods_positive")),
        sa.CheckConstraint(
            "logistics_fen >= 0 AND fee_fen >= 0", name=op.f("ck_order_charges_not_negative")
        ),
        sa.CheckConstraint(
            "total_fen = goods_fen + logistics_fen + fee_fen", name=op.f("ck_order_total_adds_up")
        ),
        sa.ForeignKeyConstraint(
            ["buyer_id"],
            ["organisation.id"],
            name=op.f("fk_order_buyer_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["destination_code"], ["region.code"], name=op.f("fk_order_destination_code_region")
        ),
        sa.ForeignKeyConstraint(
            ["placed_by_id"], ["user_account.id"], name=op.f("fk_order_placed_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order")),
    )
    op.create_index(
        "ix_order_buyer_created", "order", ["buyer_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_order_payment_due",
        "order",
        ["payment_due_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending_payment'"),
    )
    op.create_table(
        "fulfilment",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column("goods_fen", sa.BigInteger(), nullable=False),
        sa.Column("logistics_fen", sa.BigInteger(), nullable=False),
        sa.Column("transit_days", sa.Integer(), nullable=False),
        sa.Column("packed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirm_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_confirmed_by", sa.String(length=8), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'packed', 'shipped', 'delivered', 'cancelled')",
            name=op.f("ck_fulfilment_status"),
        ),
        sa.CheckConstraint(
            "goods_fen > 0 AND logistics_fen >= 0", name=op.f("ck_fulfilment_amounts")
        ),
        sa.ForeignKeyConstraint(
            ["cooperative_id"],
            ["organisation.id"],
            name=op.f("fk_fulfilment_cooperative_id_organisation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["order.id"],
            name=op.f("fk_fulfilment_order_id_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment")),
    )
    op.create_index(
        "ix_fulfilment_auto_confirm",
        "fulfilment",
        ["confirm_by"],
        unique=False,
        postgresql_where=sa.text("status = 'shipped'"),
    )
    op.create_index(
        "ix_fulfilment_cooperative_created",
        "fulfilment",
        ["cooperative_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "uq_fulfilment_order_cooperative", "fulfilment", ["order_id", "cooperative_id"], unique=True
    )
    op.create_table(
        "shipment",
        sa.Column("fulfilment_id", sa.Uuid(), nullable=False),
        sa.Column("carrier", sa.String(length=60), nullable=False),
        sa.Column("tracking_number", sa.String(length=60), nullable=False),
        sa.Column("cold_chain", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("shipped_by_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["fulfilment_id"],
            ["fulfilment.id"],
            name=op.f("fk_shipment_fulfilment_id_fulfilment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shipped_by_id"],
            ["user_account.id"],
            name=op.f("fk_shipment_shipped_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipment")),
    )
    op.create_index("ix_shipment_fulfilment", "shipment", ["fulfilment_id"], unique=False)
    op.create_table(
        "order_line",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("fulfilment_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), server_default="listing", nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_size", sa.BigInteger(), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("line_total_fen", sa.BigInteger(), nullable=False),
        sa.Column("poor_share_bp", sa.Integer(), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint("kind IN ('listing')", name=op.f("ck_order_line_kind")),
        sa.CheckConstraint(
            "line_total_fen = quantity * unit_price_fen", name=op.f("ck_order_line_total_adds_up")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_line_quantity_positive")),
        sa.CheckConstraint("unit_price_fen > 0", name=op.f("ck_order_line_price_positive")),
        sa.ForeignKeyConstraint(
            ["fulfilment_id"],
            ["fulfilment.id"],
            name=op.f("fk_order_line_fulfilment_id_fulfilment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.id"],
            name=op.f("fk_order_line_listing_id_listing"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["lot.id"], name=op.f("fk_order_line_lot_id_lot"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["order.id"],
            name=op.f("fk_order_line_order_id_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_line")),
    )
    op.create_index("ix_order_line_listing", "order_line", ["listing_id"], unique=False)
    op.create_index("ix_order_line_order", "order_line", ["order_id"], unique=False)
    op.create_table(
        "shipment_event",
        sa.Column("shipment_id", sa.Uuid(), nullable=False),
        sa.Column("happened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", sa.String(length=100), nullable=True),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("temperature_c10", sa.Integer(), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipment.id"],
            name=op.f("fk_shipment_event_shipment_id_shipment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipment_event")),
    )
    op.create_index(
        "ix_shipment_event_shipment", "shipment_event", ["shipment_id", "happened_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_shipment_event_shipment", table_name="shipment_event")
    op.drop_table("shipment_event")
    op.drop_index("ix_order_line_order", table_name="order_line")
    op.drop_index("ix_order_line_listing", table_name="order_line")
    op.drop_table("order_line")
    op.drop_index("ix_shipment_fulfilment", table_name="shipment")
    op.drop_table("shipment")
    op.drop_index("uq_fulfilment_order_cooperative", table_name="fulfilment")
    op.drop_index("ix_fulfilment_cooperative_created", table_name="fulfilment")
    op.drop_index(
        "ix_fulfilment_auto_confirm",
        table_name="fulfilment",
        postgresql_where=sa.text("status = 'shipped'"),
    )
    op.drop_table("fulfilment")
    op.drop_index(
        "ix_order_payment_due",
        table_name="order",
        postgresql_where=sa.text("status = 'pending_payment'"),
    )
    op.drop_index("ix_order_buyer_created", table_name="order")
    op.drop_table("order")
