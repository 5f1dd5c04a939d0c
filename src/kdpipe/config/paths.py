"""``paths:``: where each step reads and writes its files."""

from __future__ import annotations

from kdpipe.config.section import Section


class PathsConfig(Section):
    prepared: str = "data/prepared"
    teacher: str = "artifacts/teacher"
    student: str = "artifacts/student"
    checkpoints: str = "artifacts/checkpoints"
    validation: str = "artifacts/validation"
    promotion: str = "artifacts/promotion"
    teacher_cache: str = "artifacts/teacher_cache"
