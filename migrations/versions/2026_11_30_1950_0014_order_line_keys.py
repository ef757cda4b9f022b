"""order lines: two keys of two columns instead of four single ones. (fulfilment_id,
order_id) refers to fulfilment (id, order_id): a line's order is its fulfilment's order.
(listing_id, lot_id) refers to listing (id, lot_id): a line's lot, whose poor-household share
it freezes, is its listing's lot. Each new key keeps the name of the single key it replaces.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 19:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("uq_fulfilment_id_order", "fulfilment", ["id", "order_id"], unique=True)
    op.create_index("uq_listing_id_lot", "listing", ["id", "lot_id"], unique=True)
    for name in (
        "fk_order_line_order_id_order",
        "fk_order_line_fulfilment_id_fulfilment",
        "fk_order_line_listing_id_listing",
        "fk_order_line_lot_id_lot",
    ):
        op.drop_constraint(name, "order_line", type_="foreignkey")
    op.create_foreign_key(
        "fk_order_line_fulfilment_id_fulfilment",
        "order_line",
        "fulfilment",
        ["fulfilment_id", "order_id"],
        ["id", "order_id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        "fk_order_line_listing_id_listing",
        "order_line",
        "listing",
        ["listing_id", "lot_id"],
        ["id", "lot_id"],
        ondelete="RESTRICT",
    )


def downgrade() -> None:
    op.drop_constraint("fk_order_line_listing_id_listing", "order_line", type_="foreignkey")
    op.drop_constraint("fk_order_line_fulfilment_id_fulfilment", "order_line", type_="foreignkey")
    op.create_foreign_key(
        "fk_order_line_order_id_order",
        "order_line",
        "order",
        ["order_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        "fk_order_line_fulfilment_id_fulfilment",
        "order_line",
        "fulfilment",
        ["fulfilment_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        "fk_order_line_listing_id_listing",
        "order_line",
        "listing",
        ["listing_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_foreign_key(
        "fk_order_line_lot_id_lot", "order_line", "lot", ["lot_id"], ["id"], ondelete="RESTRICT"
    )
    op.drop_index("uq_listing_id_lot", table_name="listing")
    op.drop_index("uq_fulfilment_id_order", table_name="fulfilment")
