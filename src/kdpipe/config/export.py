"""``export:``: the ONNX exports validate makes and how their inference cost is probed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from kdpipe.config.section import MAX_BATCH, MAX_CALLS, MAX_IMAGES, MAX_THREADS, Section


class ExportConfig(Section):
    enabled: bool = Field(
        True,
        description="validate exports teacher and student to ONNX (student also int8) and "
        "measures every format's inference cost",
    )
    formats: tuple[Literal["onnx", "openvino"], ...] = Field(
        ("onnx", "openvino"),
        description="the deployable formats validate makes of the student, fp32 and int8 each, beside eager "
        "PyTorch: onnx (ONNX Runtime; always made: the others are converted from it) and openvino (OpenVINO IR, "
        "int8 by NNCF)",
    )
    calibration_size: int = Field(
        512, ge=1, le=MAX_IMAGES, description="transfer-set images that calibrate the int8 activations"
    )
    max_int8_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="int8 top-1 may trail fp32 by this much on the gate "
        "split; beyond it int8 is not offered for deployment",
    )
    opset: int = Field(
        18,
        ge=18,
        le=23,
        description="the ONNX opset of every export, written into the file's metadata (18: what torch's exporter "
        "targets itself; others go through ONNX's version converter)",
    )
    threads: int = Field(
        1, ge=1, le=MAX_THREADS, description="CPU threads of every cost probe (1: the common edge case)"
    )
    batch_size: int = Field(64, ge=1, le=MAX_BATCH, description="the batch of the throughput figure")
    repeats: int = Field(
        200, ge=20, le=MAX_CALLS, description="timed batch-1 calls per probe (p95 is the 10th slowest of 200)"
    )
    latency_probes: int = Field(
        3,
        ge=1,
        le=99,
        description="fresh probes of the student's deploy format whose median the gate reads; over "
        "validate.max_latency_ms, latency_probes + 1 more are run before it refuses",
    )
    warmup: int = Field(20, ge=0, le=MAX_CALLS, description="untimed batch-1 calls before timing")

    @field_validator("formats", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("formats", mode="after")
    @classmethod
    def _onnx_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """ONNX is every other format's source: it is always made, first (after validation, so that an error
        names the index the user wrote)."""
        return ("onnx", *dict.fromkeys(f for f in value if f != "onnx"))
