"""The search interface every backend implements, and the plain data it exchanges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Health:
    ok: bool
    backend: str
    detail: str = ""


@runtime_checkable
class SearchEngine(Protocol):
    name: str

    async def health(self) -> Health:
        """Whether the engine answers; never raises."""
        ...

    async def close(self) -> None: ...
