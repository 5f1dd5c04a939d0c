"""What every section of params.yaml shares: unknown keys, wrong types and assignment are errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class KeyedError(ValueError):
    """A check that knows which key is at fault (one across sections, or a deprecated key): the error names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def yaml_off(value: Any) -> Any:
    """YAML 1.1 reads an unquoted ``off`` as false: in a choice that has an ``off``, false means it."""
    return "off" if value is False else value
