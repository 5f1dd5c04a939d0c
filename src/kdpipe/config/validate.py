"""``validate:``: what validate_student measures (corruptions, operational sets, cost) and its thresholds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kdpipe.config.section import Section


class OperationalSetConfig(Section):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$", description="names its metrics: letters, digits, _ and -"
    )
    source: str = Field(
        min_length=1,
        description="an ImageFolder or prepared data directory, s3://bucket/prefix or dvc+<repo>@<rev>#<path>",
    )
    split: Literal["train", "val", "test"] = Field("test", description="the split read from a prepared data directory")


class ValidateConfig(Section):
    min_top1: float = Field(0.88, ge=0, le=1)
    max_teacher_gap: float | None = Field(0.06, ge=0, le=1, description="teacher top-1 minus student top-1")
    max_latency_ms: float | None = Field(50.0, gt=0, description="per image at batch 1")
    corruptions: Literal["none", "fast", "full"] = Field(
        "fast",
        description="the corruption suite on the gate split (gate.split): none; fast, every corruption at severity 3; "
        "full, at severities 1-5",
    )
    corruption_seed: int = Field(0, description="the suite's noise, offsets and angles; fixed so runs compare")
    max_corruption_gap: float | None = Field(
        None, ge=0, le=1, description="teacher mean corrupted top-1 minus the student's; null: not checked"
    )
    deploy_format: Literal["pytorch", "onnx", "onnx_int8", "openvino", "openvino_int8"] = Field(
        "onnx",
        description="the artifact that is deployed: its measured latency and memory are what "
        "max_latency_ms and max_memory_mb read",
    )
    max_memory_mb: float | None = Field(
        None,
        gt=0,
        description="memory a fresh process needs to load the deploy format and run one batch; null: "
        "reported, not checked",
    )
    device_profile: str | None = Field(
        None,
        pattern=r"^models:/[^#\s]+#[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="a target device's stored probe of a registered student, models:/<name>@<alias>#<device> or "
        "models:/<name>/<version>#<device> (the tag attach-probe wrote): max_latency_ms then reads the latency "
        "estimated on that device; null: as measured on the validating pod",
    )
    operational: tuple[OperationalSetConfig, ...] = Field(
        (), description="named extra evaluation sets (field data), each measured beside the test split"
    )
    operational_min_top1: dict[str, float] = Field(
        {}, description="per named operational set, the student's lowest acceptable top-1 there"
    )

    @field_validator("operational", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _known_sets(self) -> ValidateConfig:
        names = [s.name for s in self.operational]
        if len(set(names)) != len(names):
            raise ValueError(f"operational: set names must be unique, got {names}")
        unknown = sorted(set(self.operational_min_top1) - set(names))
        if unknown:
            raise ValueError(
                f"operational_min_top1: {', '.join(unknown)} names no set in validate.operational "
                f"({', '.join(names) or 'none'})"
            )
        bad = {k: v for k, v in self.operational_min_top1.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"operational_min_top1: top-1 thresholds lie in [0, 1], got {bad}")
        return self
