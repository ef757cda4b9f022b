"""initial schema: accounts, organisations, memberships, API keys, regions, idempotency keys

Revision ID: 0001
Revises:
Create Date: 2026-11-30 07:57:17.538007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # trigram matching serves Latin/pinyin typo tolerance in search
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "idempotency_key",
        sa.Column("principal", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("response_media_type", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_idempotency_key")),
    )
    op.create_index(
        op.f("ix_idempotency_key_created_at"), "idempotency_key", ["created_at"], unique=False
    )
    op.create_table(
        "region",
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column("name_zh", sa.String(length=64), nullable=False),
        sa.Column("short_name_zh", sa.String(length=64), nullable=False),
        sa.Column("name_pinyin", sa.String(length=128), nullable=False),
        sa.Column("name_initials", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("parent_code", sa.String(length=6), nullable=True),
        sa.Column("longitude", sa.Numeric(precision=9, scale=6), nullable=False),
        sa.Column("latitude", sa.Numeric(precision=9, scale=6), nullable=False),
        sa.Column("is_poverty_county", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("poverty_flag_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("code ~ '^[0-9]{6}$'", name=op.f("ck_region_code_format")),
        sa.CheckConstraint("level IN ('province', 'city', 'county')", name=op.f("ck_region_level")),
        sa.ForeignKeyConstraint(
            ["parent_code"], ["region.code"], name=op.f("fk_region_parent_code_region")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_region")),
    )
    op.create_index(
        "ix_region_name_initials",
        "region",
        ["name_initials"],
        unique=False,
        postgresql_ops={"name_initials": "text_pattern_ops"},
    )
    op.create_index(
        "ix_region_name_pinyin",
        "region",
        ["name_pinyin"],
        unique=False,
        postgresql_ops={"name_pinyin": "text_pattern_ops"},
    )
    op.create_index(
        "ix_region_name_zh",
        "region",
        ["name_zh"],
        unique=False,
        postgresql_ops={"name_zh": "text_pattern_ops"},
    )
    op.create_index(op.f("ix_region_parent_code"), "region", ["parent_code"], unique=False)
    op.create_table(
        "user_account",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
    )
    op.create_index(
        "uq_user_account_email_lower",
        "user_account",
        [sa.literal_column("lower(email)")],
        unique=True,
    )
    op.create_table(
        "access_token",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_access_token_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_token_token_hash")),
    )
    op.create_index(op.f("ix_access_token_user_id"), "access_token", ["user_id"], unique=False)
    op.create_table(
        "organisation",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("unified_social_credit_code", sa.String(length=18), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("contact_phone", sa.String(length=32), nullable=True),
        sa.Column(
            "verification_status", sa.String(length=16), server_default="pending", nullable=False
        ),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by_id", sa.Uuid(), nullable=True),
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
            "(verification_status = 'rejected') = (rejection_reason IS NOT NULL)",
            name=op.f("ck_organisation_rejection_has_reason"),
        ),
        sa.CheckConstraint(
            "kind IN ('cooperative', 'buyer', 'organiser', 'authority', 'platform')",
            name=op.f("ck_organisation_kind"),
        ),
        sa.CheckConstraint(
            "verification_status IN ('pending', 'verified', 'rejected')",
            name=op.f("ck_organisation_verification"),
        ),
        sa.ForeignKeyConstraint(
            ["region_code"], ["region.code"], name=op.f("fk_organisation_region_code_region")
        ),
        sa.ForeignKeyConstraint(
            ["verified_by_id"],
            ["user_account.id"],
            name=op.f("fk_organisation_verified_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisation")),
    )
    op.create_index("ix_organisation_created", "organisation", ["created_at", "id"], unique=False)
    op.create_index(op.f("ix_organisation_kind"), "organisation", ["kind"], unique=False)
    op.create_index(
        op.f("ix_organisation_region_code"), "organisation", ["region_code"], unique=False
    )
    op.create_table(
        "api_key",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(), nullable=False),
        sa.Column("scopes", sa.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("cardinality(scopes) > 0", name=op.f("ck_api_key_has_scopes")),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_api_key_created_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_api_key_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
    )
    op.create_index(
        op.f("ix_api_key_organisation_id"), "api_key", ["organisation_id"], unique=False
    )
    op.create_table(
        "authority_region",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("granted_by_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["granted_by_id"],
            ["user_account.id"],
            name=op.f("fk_authority_region_granted_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_authority_region_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["region_code"], ["region.code"], name=op.f("fk_authority_region_region_code_region")
        ),
        sa.PrimaryKeyConstraint("organisation_id", "region_code", name=op.f("pk_authority_region")),
    )
    op.create_table(
        "invitation",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("invited_by_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('owner', 'staff', 'viewer')", name=op.f("ck_invitation_role")),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["user_account.id"],
            name=op.f("fk_invitation_invited_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_invitation_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitation_token_hash")),
    )
    op.create_index(
        op.f("ix_invitation_organisation_id"), "invitation", ["organisation_id"], unique=False
    )
    op.create_table(
        "membership",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('owner', 'staff', 'viewer')", name=op.f("ck_membership_role")),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_membership_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_membership_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organisation_id", "user_id", name=op.f("pk_membership")),
    )
    op.create_index(op.f("ix_membership_user_id"), "membership", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_membership_user_id"), table_name="membership")
    op.drop_table("membership")
    op.drop_index(op.f("ix_invitation_organisation_id"), table_name="invitation")
    op.drop_table("invitation")
    op.drop_table("authority_region")
    op.drop_index(op.f("ix_api_key_organisation_id"), table_name="api_key")
    op.drop_table("api_key")
    op.drop_index(op.f("ix_organisation_region_code"), table_name="organisation")
    op.drop_index(op.f("ix_organisation_kind"), table_name="organisation")
    op.drop_index("ix_organisation_created", table_name="organisation")
    op.drop_table("organisation")
    op.drop_index(op.f("ix_access_token_user_id"), table_name="access_token")
    op.drop_table("access_token")
    op.drop_index("uq_user_account_email_lower", table_name="user_account")
    op.drop_table("user_account")
    op.drop_index(op.f("ix_region_parent_code"), table_name="region")
    op.drop_index(
        "ix_region_name_zh", table_name="region", postgresql_ops={"name_zh": "text_pattern_ops"}
    )
    op.drop_index(
        "ix_region_name_pinyin",
        table_name="region",
        postgresql_ops={"name_pinyin": "text_pattern_ops"},
    )
    op.drop_index(
        "ix_region_name_initials",
        table_name="region",
        postgresql_ops={"name_initials": "text_pattern_ops"},
    )
    op.drop_table("region")
    op.drop_index(op.f("ix_idempotency_key_created_at"), table_name="idempotency_key")
    op.drop_table("idempotency_key")
