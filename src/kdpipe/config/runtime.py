"""``runtime:``: where and how a step computes (device, threads, precision, progress); no result depends on it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from kdpipe.config.section import MAX_BATCH, MAX_THREADS, Section, yaml_off


class RuntimeConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="torch CPU threads; null uses every core")
    amp: bool = Field(True, description="bf16 autocast, CUDA only")
    channels_last: bool = Field(
        True, description="channels_last memory format for images and convolutions (CUDA and CPU)"
    )
    eval_batch_size: int = Field(256, ge=1, le=MAX_BATCH, description="images per evaluation batch")
    termination_grace_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="after SIGTERM, the seconds a step has to stop (ending its run KILLED) before it exits "
        "regardless; match the pod's terminationGracePeriodSeconds (30 by default)",
    )
    progress: Annotated[Literal["auto", "bar", "log", "off"], BeforeValidator(yaml_off)] = Field(
        "auto",
        description="progress of training epochs and of reading, hashing and verifying data: auto (a bar on a "
        "terminal, log lines elsewhere), bar, log or off",
    )
    """YAML 1.1 reads a bare ``off`` (in params.yaml or ``-p``) as false; it means "off" here."""
