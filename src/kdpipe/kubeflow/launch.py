"""The distill step inside its pod: in-process on one device, under torchrun on several.

torchrun (``python -m torch.distributed.run``) starts one ``kdpipe distill`` process per GPU of
the pod; each joins the process group and trains on its shard (see :mod:`kdpipe.training.distributed`).
The params travel as a file, the same one ``kdpipe -c`` reads.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import METRICS_FILE, PARAMS_FILE, atomic_write_text, read_json
from kdpipe.kubeflow.params import dump_params

DistillStep = Callable[..., dict[str, Any]]


def scratch_dir(cache_dir: str, *parts: str) -> str:
    """A directory under ``cache_dir`` (a PVC that outlives the pod) or, without one, a fresh temp dir."""
    if not cache_dir:
        return tempfile.mkdtemp(prefix="kdpipe-")
    path = Path(cache_dir, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def teacher_cache_dir(cache_dir: str, artifact_path: str) -> str:
    """Where the teacher-output cache lives: on the data-cache PVC (shared by every run, keyed, so a later night
    reuses it), else in the teacher_outputs artifact that Kubeflow copies to distill."""
    return str(Path(cache_dir, "teacher_cache")) if cache_dir else artifact_path


def note_location(artifact_path: str, directory: str) -> None:
    """When the files live elsewhere (the PVC), the artifact holds a note saying where, so it is never empty."""
    if Path(directory) != Path(artifact_path):
        Path(artifact_path).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(artifact_path) / "location.json", json.dumps({"directory": directory}) + "\n")


def torchrun_command(params_file: str, nproc_per_node: int | None = None, *, resume: bool = True) -> list[str]:
    """torchrun over ``kdpipe distill``; without ``nproc_per_node`` torchrun reads its PET_* environment."""
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    if nproc_per_node is not None:
        launcher += ["--standalone", f"--nproc-per-node={nproc_per_node}"]
    return [*launcher, "-m", "kdpipe", "distill", "-c", params_file, *(["--resume"] if resume else [])]


def distill(params: Params, num_processes: int, in_process: DistillStep, *, resume: bool = True) -> dict[str, Any]:
    """Train the student with ``num_processes`` data-parallel processes; returns the step's summary.

    One process runs ``in_process`` (the distill step) here; several run it under torchrun.
    """
    if num_processes <= 1:
        return in_process(params, resume=resume)
    params_file = Path(params.paths.checkpoints) / PARAMS_FILE
    atomic_write_text(params_file, dump_params(params))
    with subprocess.Popen(torchrun_command(str(params_file), num_processes, resume=resume)) as torchrun:
        try:
            code = torchrun.wait()
        except KeyboardInterrupt:  # SIGTERM (kdpipe.infra.termination) or Ctrl-C: the ranks stop as one process does
            torchrun.send_signal(signal.SIGTERM)  # torchrun passes it on to every rank
            with contextlib.suppress(subprocess.TimeoutExpired):
                torchrun.wait(timeout=params.runtime.termination_grace_s)
            raise
    if code != 0:
        raise KdpipeError(
            f"distill: torchrun with {num_processes} processes exited with {code}; the ranks' logs above say why"
        )
    return read_json(Path(params.paths.student) / METRICS_FILE)
