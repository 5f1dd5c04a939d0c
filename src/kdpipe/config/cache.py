"""``cache:``: the teacher-output cache: whether a distill run uses it, its precision and its budget.

The mode is a pipeline setting, one for every method. It used to be a key of each method's section,
``method.<name>.cache``: that key is still read as ``cache.mode``, with a warning naming the new key, and is an
error when it disagrees with ``cache.mode`` or with another method's.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field

from kdpipe.config.section import KeyedError, Section, yaml_off

log = logging.getLogger("kdpipe")

Mode = Literal["auto", "off", "require"]
CacheMode = Annotated[Mode, BeforeValidator(yaml_off)]
MODES: tuple[str, ...] = get_args(Mode)
DEPRECATED_KEY = "cache"
"""The key each ``method.<name>`` section held before ``cache.mode``."""


class CacheConfig(Section):
    mode: CacheMode = Field(
        "auto",
        description="whether a distill run uses the teacher-output cache: auto (replay what is cached, record "
        "the rest), require (fail unless every epoch is cached), off. A method without a teacher (scratch) never "
        "does. One setting for every method (formerly method.<name>.cache, still read with a warning)",
    )
    dtype: Literal["float32", "float16"] = Field(
        "float32", description="float32 replays bit-identically; float16 halves the storage"
    )
    max_gb: float = Field(8.0, gt=0, description="the most a distill run records into the teacher cache")


def move_deprecated_mode(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """``raw`` (a params tree, not changed) with each deprecated ``method.<name>.cache`` read as ``cache.mode``."""
    method = raw.get("method")
    if not isinstance(method, dict):
        return raw
    old = {
        f"method.{name}.{DEPRECATED_KEY}": yaml_off(section[DEPRECATED_KEY])
        for name, section in sorted(method.items())
        if isinstance(section, dict) and DEPRECATED_KEY in section
    }
    if not old:
        return raw
    for key, value in old.items():
        if value not in MODES:
            raise KeyedError(key, f"one of {', '.join(MODES)} (got {value!r}); this key is deprecated: set cache.mode")
    if len(set(old.values())) > 1:
        said = ", ".join(f"{key} is {value}" for key, value in old.items())
        raise KeyedError("cache.mode", f"{said}: the cache mode is one setting for every method now; set cache.mode")
    mode, keys, one = next(iter(old.values())), ", ".join(old), len(old) == 1
    cache = raw.get("cache")
    if isinstance(cache, dict) and "mode" in cache and yaml_off(cache["mode"]) != mode:
        said = f"the deprecated {keys} {'says' if one else 'say'} {mode!r}"
        raise KeyedError("cache.mode", f"{yaml_off(cache['mode'])!r}, but {said}; set cache.mode alone")
    verb = "is" if one else "are"
    log.warning("%s: %s %s deprecated; set cache.mode instead (read as cache.mode: %s)", origin, keys, verb, mode)
    moved = {
        name: {k: v for k, v in section.items() if k != DEPRECATED_KEY} if isinstance(section, dict) else section
        for name, section in method.items()
    }
    if isinstance(cache, dict):
        cache = {**cache, "mode": mode}
    elif cache is None:
        cache = {"mode": mode}  # else not a section: left for the schema to reject
    return {**raw, "method": moved, "cache": cache}
