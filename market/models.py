"""Imports every domain's models so that Base.metadata knows all tables (Alembic, tests)."""

from market.accounts import models as accounts_models
from market.catalog import models as catalog_models
from market.households import models as households_models
from market.idempotency import models as idempotency_models
from market.listing_search import models as listing_search_models
from market.listings import models as listings_models
from market.money import models as money_models
from market.notifications import models as notifications_models
from market.orders import models as orders_models
from market.organisations import models as organisations_models
from market.regions import models as regions_models
from market.sourcing import models as sourcing_models
from market.trading import models as trading_models

__all__ = [
    "accounts_models",
    "catalog_models",
    "households_models",
    "idempotency_models",
    "listing_search_models",
    "listings_models",
    "money_models",
    "notifications_models",
    "orders_models",
    "organisations_models",
    "regions_models",
    "sourcing_models",
    "trading_models",
]
