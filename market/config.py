"""Settings of the whole service, read from `MARKET_*` environment variables (and `.env`)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SearchBackend(StrEnum):
    postgres = "postgres"
    elasticsearch = "elasticsearch"


class PaymentProvider(StrEnum):
    offline = "offline"
    stripe = "stripe"


class Settings(BaseSettings):
    """Everything that differs between a laptop demo and a production deployment."""

    model_config = SettingsConfigDict(env_prefix="MARKET_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL 15+ URL (postgresql://user:pass@host:5432/db). "
        "Unset: start embedded PostgreSQL in the data directory.",
    )
    data_dir: Path = Field(
        default=Path("var"), description="Where embedded PostgreSQL and local files live."
    )
    database_name: str = Field(
        default="agribridge", description="Database created inside embedded PostgreSQL."
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)

    host: str = Field(default="127.0.0.1", description="Address the API server binds to.")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-* headers are trusted (comma-separated, or *).",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port the API server binds to.")

    search_backend: SearchBackend = SearchBackend.postgres
    elasticsearch_url: str | None = Field(
        default=None, description="Elasticsearch 8/9 URL, used when search_backend=elasticsearch."
    )
    elasticsearch_api_key: SecretStr | None = None
    elasticsearch_opensearch_compat: bool = Field(
        default=False,
        description="Send plain application/json (needed by OpenSearch-compatible servers).",
    )
    elasticsearch_index_prefix: str = "agribridge"
    worker: bool = Field(
        default=True,
        description="Run the background work (search sync, unpaid-order expiry, automatic "
        "delivery confirmation) inside the server process; turn off when separate `market "
        "worker` processes run.",
    )
    search_worker_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between polls of the search outbox."
    )

    payment_provider: PaymentProvider = PaymentProvider.offline
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = Field(
        default=None, description="Override of the Stripe API address (tests, proxies)."
    )
    stripe_localstripe_compat: bool = Field(
        default=False,
        description="Speak what localstripe (a Stripe stand-in for tests) understands: "
        "payment_method_types instead of allowed_payment_method_types, no description.",
    )
    stripe_method_types: list[str] = Field(
        default=["card", "alipay", "wechat_pay"],
        description="Payment method types offered through Stripe (card, alipay, wechat_pay).",
    )
    settlement_hold_days: int = Field(
        default=3,
        ge=0,
        le=90,
        description="Days after delivery before a cooperative's part is settled to it.",
    )
    card_capture_within_days: int = Field(
        default=6,
        ge=1,
        le=7,
        description="Card authorisations are captured after this many days even if nothing "
        "shipped (Stripe's expire after 7).",
    )
    payment_reconcile_minutes: int = Field(
        default=15,
        ge=1,
        le=24 * 60,
        description="Payments and refunds still open after this many minutes are fetched "
        "from the provider and repaired (lost webhooks, crashes).",
    )
    max_statement_bytes: int = Field(
        default=64 * 1_048_576, ge=1024, description="Largest bank statement upload."
    )
    bank_account_name: str = "农商桥平台资金监管账户"
    bank_account_number: str = "6222 0000 0000 0000 000"
    bank_name: str = "中国农业银行白银分行"

    access_token_ttl_minutes: int = Field(default=720, ge=1, le=60 * 24 * 30)
    invitation_ttl_hours: int = Field(default=72, ge=1, le=24 * 30)
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    order_payment_minutes: int = Field(
        default=30,
        ge=1,
        le=60 * 24 * 7,
        description="Minutes a buyer has to pay; then the order expires and its stock returns.",
    )
    delivery_auto_confirm_days: int = Field(
        default=10,
        ge=1,
        le=90,
        description="Days after shipment when delivery counts as confirmed if the buyer is silent.",
    )
    auction_snipe_minutes: int = Field(
        default=5,
        ge=0,
        le=120,
        description="A bid this close to an auction's end extends it by as many minutes.",
    )
    auction_max_extensions: int = Field(
        default=3, ge=0, le=50, description="How often an auction's close can be extended."
    )
    freshness_margin_days: int = Field(
        default=2,
        ge=0,
        le=60,
        description="Days of shelf life that must remain when goods arrive (logistics estimates).",
    )
    platform_fee_bps: int = Field(
        default=300, ge=0, le=10_000, description="Platform fee in basis points (300 = 3%)."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body.")

    secret_key: SecretStr | None = Field(
        default=None,
        description="Key of the keyed hashes of ID-card numbers. Unset: generated once into "
        "<data_dir>/secret.key. Changing it makes stored hashes unmatchable.",
    )

    log_level: str = "INFO"
    log_json: bool = True

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain values, secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif name.endswith("_url") and isinstance(value, str):
                value = mask_url(value)
            elif isinstance(value, Path | StrEnum):
                value = str(value)
            out[name] = value
        return out

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    def hashing_key(self) -> bytes:
        """The secret for keyed hashes: the setting, else a key file made once (mode 0600)."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            import os
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


def mask_url(url: str) -> str:
    """Hide the password of a URL such as postgresql://user:secret@host/db."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:********@{host}"
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
