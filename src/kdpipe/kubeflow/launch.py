"""The distill step inside its pod: in-process on one device, under torchrun on several.

torchrun (``python -m torch.distributed.run``) starts one ``kdpipe distill`` process per GPU of
the pod; each joins the process group and trains on its shard (see :mod:`kdpipe.distributed`).
The params travel as a file, the same one ``kdpipe -c`` reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.errors import KdpipeError
from kdpipe.kubeflow.params import dump_params

PARAMS_FILE = "params.yaml"


def scratch_dir(cache_dir: str, *parts: str) -> str:
    """A directory under ``cache_dir`` (a PVC that outlives the pod) or, without one, a fresh temp dir."""
    if not cache_dir:
        return tempfile.mkdtemp(prefix="kdpipe-")
    path = Path(cache_dir, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def torchrun_command(params_file: str, nproc_per_node: int | None = None, *, resume: bool = True) -> list[str]:
    """torchrun over ``kdpipe distill``; without ``nproc_per_node`` torchrun reads its PET_* environment."""
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    if nproc_per_node is not None:
        launcher += ["--standalone", f"--nproc-per-node={nproc_per_node}"]
    return [*launcher, "-m", "kdpipe.cli", "distill", "-c", params_file, *(["--resume"] if resume else [])]


def distill(params: Params, num_processes: int, *, resume: bool = True) -> dict[str, Any]:
    """Train the student with ``num_processes`` data-parallel processes; returns the step's summary."""
    if num_processes <= 1:
        return steps.distill(params, resume=resume)
    params_file = Path(params.paths.checkpoints) / PARAMS_FILE
    params_file.parent.mkdir(parents=True, exist_ok=True)
    params_file.write_text(dump_params(params))
    done = subprocess.run(torchrun_command(str(params_file), num_processes, resume=resume), check=False)
    if done.returncode != 0:
        raise KdpipeError(f"distill: torchrun with {num_processes} processes exited with {done.returncode}; "
                          "the ranks' logs above say why")
    return dict(json.loads((Path(params.paths.student) / steps.METRICS_FILE).read_text()))
