"""search: a county's change reaches the index. The documents carry the cooperative's county
(its name, coordinates and poverty-county flag); setting the flag (an official's decision or a
CSV import) touched no listing, so `poverty_only` kept the old answer until each listing
changed for another reason. As for organisations and products, a statement trigger bumps the
version of the active listings of the county's cooperatives, which writes their outbox rows.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
CREATE FUNCTION region_touches_listings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE listing l SET version = l.version
      FROM organisation org, new_region n JOIN old_region o ON o.code = n.code
     WHERE org.region_code = n.code AND l.cooperative_id = org.id AND l.status = 'active'
       AND (n.name_zh, n.latitude, n.longitude, n.is_poverty_county)
           IS DISTINCT FROM (o.name_zh, o.latitude, o.longitude, o.is_poverty_county);
    RETURN NULL;
END $$
""")
    op.execute("""
CREATE TRIGGER region_touches_listings AFTER UPDATE ON region
    REFERENCING OLD TABLE AS old_region NEW TABLE AS new_region
    FOR EACH STATEMENT EXECUTE FUNCTION region_touches_listings()
""")


def downgrade() -> None:
    op.execute("DROP TRIGGER region_touches_listings ON region")
    op.execute("DROP FUNCTION region_touches_listings()")
