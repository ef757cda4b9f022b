"""The base of every request body: unknown fields refused, text trimmed, and no control
characters in text. PostgreSQL refuses a NUL in text, so one let through ended a request in
a 500 after validation; now it is a 422 naming the field, whatever the model."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

# C0 controls and DEL, except tab, line feed and carriage return (a note may have lines)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def has_control(value: Any) -> bool:
    """Whether a string in `value` (a string, or lists and dicts of them) holds a control
    character."""
    if isinstance(value, str):
        return _CONTROL.search(value) is not None
    if isinstance(value, list | tuple):
        return any(has_control(v) for v in value)
    if isinstance(value, dict):
        return any(has_control(k) or has_control(v) for k, v in value.items())
    return False


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if has_control(value):
            raise ValueError("must not contain control characters (such as NUL)")
        return value
