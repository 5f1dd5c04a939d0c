"""How many CPU threads each of the study's worker processes gets (the cores shared by those running at once), and
the machine a report names."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from kdpipe.config import RuntimeConfig


def cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available(runtime: RuntimeConfig) -> int:
    """``runtime.num_threads``, else every core this process may run on."""
    return runtime.num_threads or cores()


def per_worker(runtime: RuntimeConfig, workers: int) -> int:
    """The threads of each of ``workers`` processes running at once: an equal share of :func:`available`, at
    least one."""
    return max(1, available(runtime) // max(1, workers))


def machine() -> str:
    """The CPU model and the cores this process may use, for a report: where a run's time was measured."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0] if names else platform.processor() or platform.machine()}, {cores()} cores"
