"""``student:``: the architecture the teacher is distilled into."""

from __future__ import annotations

from kdpipe.config.section import Section


class StudentConfig(Section):
    arch: str = "cnn16"
