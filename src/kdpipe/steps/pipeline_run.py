"""Which pipeline run a step belongs to: the id that groups one nightly run's steps in MLflow.

The id is ``tracking.pipeline_run_id`` when params name one, else ``$KDPIPE_PIPELINE_RUN_ID`` (set by
DVC users, Kubeflow and torchrun launches), else, for a resumed run, the id its student checkpoint
was written under, else a fresh one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from kdpipe.config import Params
from kdpipe.infra.files import load_checkpoint
from kdpipe.training.loop import CHECKPOINT_FILE, STUDENT_CHECKPOINTS

PIPELINE_RUN_ENV = "KDPIPE_PIPELINE_RUN_ID"


def with_pipeline_run_id(params: Params, environ: Mapping[str, str] = os.environ, *, resume: bool = False) -> Params:
    """``params`` with ``tracking.pipeline_run_id`` set: as given, else ``$KDPIPE_PIPELINE_RUN_ID``, else fresh.

    With ``resume``, the id a student checkpoint was written under comes before a fresh one, so a
    resumed ``kdpipe distill`` or ``kdpipe run`` stays one pipeline run in MLflow. Entry points call
    this once, so every step they run shares the id; the environment is only read.
    """
    if params.tracking.pipeline_run_id:
        return params
    run_id = environ.get(PIPELINE_RUN_ENV) or (_checkpoint_run_id(params) if resume else None) or uuid.uuid4().hex[:12]
    return params.model_copy(update={"tracking": params.tracking.model_copy(update={"pipeline_run_id": run_id})})


def _checkpoint_run_id(params: Params) -> str | None:
    path = Path(params.paths.checkpoints) / STUDENT_CHECKPOINTS / CHECKPOINT_FILE
    if not path.exists():
        return None
    run_id = load_checkpoint(path).get("meta", {}).get("pipeline_run_id")
    return str(run_id) if run_id else None
