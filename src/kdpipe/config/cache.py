"""``cache:``: the teacher-output cache's precision and budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdpipe.config.section import Section


class CacheConfig(Section):
    dtype: Literal["float32", "float16"] = Field(
        "float32", description="float32 replays bit-identically; float16 halves the storage"
    )
    max_gb: float = Field(8.0, gt=0, description="the most a distill run records into the teacher cache")
