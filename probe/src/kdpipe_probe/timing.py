"""The measurement one probe process makes: memory, then batch-1 latency and throughput.

Memory is the process's RSS high-water mark after loading the model and running one batch, minus its RSS
before loading: what the model and one inference add to a process that already has its runtime. Then
``warmup`` untimed and ``repeats`` timed batch-1 calls (p50 and p95), and ``THROUGHPUT_REPEATS`` calls at
``batch_size``. Inputs are float32 ``N x C x H x W`` in [0, 1], the exported contract.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

THROUGHPUT_REPEATS = 10
Run = Callable[[Any], Any]


def rss_mb() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """VmHWM, the RSS high-water mark of this process image: unlike getrusage's ru_maxrss it does not carry
    over the peak of the (large) parent that forked the probe."""
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def time_model(
    base_mb: float, run: Run, shape: tuple[int, ...], *, batch_size: int, repeats: int, warmup: int
) -> dict[str, float]:
    """The figures of a model loaded on top of ``base_mb`` of RSS and called through ``run``."""
    import numpy as np

    rng = np.random.default_rng(0)
    many = rng.random((batch_size, *shape), dtype=np.float32)
    run(many)
    memory = max(0.0, peak_mb() - base_mb)
    one = many[:1].copy()
    for _ in range(warmup):
        run(one)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(one)
        times.append(1000 * (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(THROUGHPUT_REPEATS):
        run(many)
    throughput = THROUGHPUT_REPEATS * batch_size / (time.perf_counter() - start)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {"p50_ms": statistics.median(times), "p95_ms": cuts[94], "throughput": throughput, "memory_mb": memory}
