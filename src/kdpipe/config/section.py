"""What every section of params.yaml shares: unknown keys, wrong types and assignment are errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

# Upper bounds on sizes and counts: far above any real run, low enough that a typo (an epoch count of 10^31)
# is an error naming the limit instead of a run that never ends.
MAX_EPOCHS = 10_000
MAX_IMAGES = 1_000_000_000
MAX_BATCH = 65_536
MAX_PIXELS = 4_096
MAX_THREADS = 1_024
MAX_CALLS = 100_000


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
