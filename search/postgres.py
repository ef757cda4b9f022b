"""Search in the application's own PostgreSQL database (the embedded default)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from search.base import Health


class PostgresSearch:
    name = "postgres"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def health(self) -> Health:
        try:
            async with self.engine.connect() as conn:
                has_trgm = await conn.scalar(
                    text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
                )
        except Exception as exc:
            return Health(ok=False, backend=self.name, detail=f"database unreachable: {exc}")
        if not has_trgm:
            return Health(ok=False, backend=self.name, detail="extension pg_trgm is missing")
        return Health(ok=True, backend=self.name)

    async def close(self) -> None:
        return None
