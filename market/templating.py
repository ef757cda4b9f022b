"""Jinja2 templates of the portal and public pages."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def percent(basis_points: int | None) -> str:
    """6126 → '61.26%': exact, since a share is an integer number of basis points."""
    if basis_points is None:
        return "–"
    return f"{basis_points // 100}.{basis_points % 100:02d}%"


templates.env.filters["percent"] = percent
