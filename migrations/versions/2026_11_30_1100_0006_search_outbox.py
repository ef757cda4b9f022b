"""search outbox: a version on every listing that grows with each change, and an outbox row for
every change that can alter what search shows, written by triggers in the changing transaction

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every UPDATE of a listing bumps its version, so "touching" a listing (SET version = version)
# is how a change elsewhere (its cooperative, product or lot) reaches the search index.
# Statement-level triggers with transition tables: one outbox INSERT per statement, and a bulk
# load of sourcing records touches each lot's listings once.
TRIGGERS = (
    """
CREATE FUNCTION listing_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END $$
    """,
    """
CREATE TRIGGER listing_next_version BEFORE UPDATE ON listing
    FOR EACH ROW EXECUTE FUNCTION listing_next_version()
    """,
    """
CREATE FUNCTION listing_to_search_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_outbox (listing_id)
    SELECT id FROM changed_listing WHERE status <> 'draft' ORDER BY id;
    RETURN NULL;
END $$
    """,
    """
CREATE TRIGGER listing_inserted_to_search_outbox AFTER INSERT ON listing
    REFERENCING NEW TABLE AS changed_listing
    FOR EACH STATEMENT EXECUTE FUNCTION listing_to_search_outbox()
    """,
    """
CREATE TRIGGER listing_updated_to_search_outbox AFTER UPDATE ON listing
    REFERENCING NEW TABLE AS changed_listing
    FOR EACH STATEMENT EXECUTE FUNCTION listing_to_search_outbox()
    """,
    """
CREATE FUNCTION organisation_touches_listings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE listing l SET version = l.version
      FROM new_organisation n JOIN old_organisation o ON o.id = n.id
     WHERE l.cooperative_id = n.id AND l.status = 'active'
       AND (n.name_zh, n.verification_status, n.region_code)
           IS DISTINCT FROM (o.name_zh, o.verification_status, o.region_code);
    RETURN NULL;
END $$
    """,
    """
CREATE TRIGGER organisation_touches_listings AFTER UPDATE ON organisation
    REFERENCING OLD TABLE AS old_organisation NEW TABLE AS new_organisation
    FOR EACH STATEMENT EXECUTE FUNCTION organisation_touches_listings()
    """,
    """
CREATE FUNCTION product_touches_listings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE listing l SET version = l.version
      FROM new_product n JOIN old_product o ON o.id = n.id
     WHERE l.product_id = n.id AND l.status = 'active'
       AND (n.name_zh, n.regional_brand, n.category_code, n.storage_class)
           IS DISTINCT FROM (o.name_zh, o.regional_brand, o.category_code, o.storage_class);
    RETURN NULL;
END $$
    """,
    """
CREATE TRIGGER product_touches_listings AFTER UPDATE ON product
    REFERENCING OLD TABLE AS old_product NEW TABLE AS new_product
    FOR EACH STATEMENT EXECUTE FUNCTION product_touches_listings()
    """,
    """
CREATE FUNCTION sourcing_touches_listings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE listing l SET version = l.version
     WHERE l.lot_id IN (SELECT DISTINCT lot_id FROM new_record) AND l.status = 'active';
    RETURN NULL;
END $$
    """,
    """
CREATE TRIGGER sourcing_touches_listings AFTER INSERT ON sourcing_record
    REFERENCING NEW TABLE AS new_record
    FOR EACH STATEMENT EXECUTE FUNCTION sourcing_touches_listings()
    """,
)

DROP_TRIGGERS = (
    "DROP TRIGGER sourcing_touches_listings ON sourcing_record",
    "DROP FUNCTION sourcing_touches_listings()",
    "DROP TRIGGER product_touches_listings ON product",
    "DROP FUNCTION product_touches_listings()",
    "DROP TRIGGER organisation_touches_listings ON organisation",
    "DROP FUNCTION organisation_touches_listings()",
    "DROP TRIGGER listing_updated_to_search_outbox ON listing",
    "DROP TRIGGER listing_inserted_to_search_outbox ON listing",
    "DROP FUNCTION listing_to_search_outbox()",
    "DROP TRIGGER listing_next_version ON listing",
    "DROP FUNCTION listing_next_version()",
)


def upgrade() -> None:
    op.add_column(
        "listing", sa.Column("version", sa.BigInteger(), server_default="1", nullable=False)
    )
    op.create_table(
        "search_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column(
            "txid", sa.BigInteger(), server_default=sa.text("txid_current()"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_outbox")),
    )
    op.create_index(
        "ix_search_outbox_pending",
        "search_outbox",
        ["available_at", "id"],
        postgresql_where=sa.text("parked_at IS NULL"),
    )
    op.create_index("ix_search_outbox_txid", "search_outbox", ["txid"])
    op.create_table(
        "search_state",
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_search_state")),
    )
    for statement in TRIGGERS:
        op.execute(statement)
    # what is already published goes to the index once
    op.execute(
        "INSERT INTO search_outbox (listing_id) SELECT id FROM listing WHERE status = 'active'"
    )


def downgrade() -> None:
    for statement in DROP_TRIGGERS:
        op.execute(statement)
    op.drop_table("search_state")
    op.drop_index("ix_search_outbox_txid", table_name="search_outbox")
    op.drop_index("ix_search_outbox_pending", table_name="search_outbox")
    op.drop_table("search_outbox")
    op.drop_column("listing", "version")
