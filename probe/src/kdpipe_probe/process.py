"""One probe in a fresh process: its imports, memory and timings are its own, not its parent's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ProbeProcessError(Exception):
    """The probe process failed; the message is its last line of stderr."""


def fresh(module: str, args: dict[str, Any], threads: int) -> dict[str, float]:
    """Run ``python -m module '<args as JSON>'`` with every thread pool pinned to ``threads`` and return the JSON
    object it prints last."""
    env = {**os.environ, **dict.fromkeys(THREAD_ENVS, str(threads))}
    result = subprocess.run(
        [sys.executable, "-m", module, json.dumps(args)], capture_output=True, text=True, env=env, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ProbeProcessError((result.stderr.strip().splitlines() or ["no output"])[-1])
    figures: dict[str, float] = json.loads(lines[-1])
    return figures
