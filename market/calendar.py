"""The calendar the marketplace lives in: dates (purchases, poverty periods, certificates) are
Chinese calendar days, whatever the server's own time zone is."""

from __future__ import annotations

import datetime as dt

# China keeps UTC+8 all year (no daylight saving)
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")


def china_today() -> dt.date:
    return dt.datetime.now(CHINA).date()
