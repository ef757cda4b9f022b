"""Great-circle distance between coordinates (haversine on the mean Earth radius)."""

from __future__ import annotations

import math
from decimal import Decimal

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius


def distance_km(
    lat1: float | Decimal, lon1: float | Decimal, lat2: float | Decimal, lon2: float | Decimal
) -> float:
    phi1, phi2 = math.radians(float(lat1)), math.radians(float(lat2))
    dphi = phi2 - phi1
    dlmb = math.radians(float(lon2) - float(lon1))
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
