"""Imports every domain's models so that Base.metadata knows all tables (Alembic, tests)."""

from market.accounts import models as accounts_models
from market.idempotency import models as idempotency_models
from market.organisations import models as organisations_models
from market.regions import models as regions_models

__all__ = ["accounts_models", "idempotency_models", "organisations_models", "regions_models"]
