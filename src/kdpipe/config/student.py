"""``student:``: the architecture the teacher is distilled into, and the weights it may start from."""

from __future__ import annotations

from pydantic import Field

from kdpipe.config.section import Section


class StudentConfig(Section):
    arch: str = Field("cnn16", description="kdpipe's names, torchvision:<name>, timm:<name>")
    init: str | None = Field(
        None,
        description="start from these weights: a state dict file or an MLflow model URI; tensors whose shape "
        "differs (the classifier, when the class count differs) stay newly initialised; null: random",
    )
