"""A component's params from its artifacts: what every component does before it calls its step.

The data set's artifact resolves to its local copy (a reference to S3 or a volume is fetched into
``cache_dir`` once), the teacher outputs to the teacher-output cache on the data-cache PVC, and the
checkpoints to a directory on that PVC keyed by the run, so that a retried pod resumes. Every other
artifact names its own ``paths.*`` directory.
"""

from __future__ import annotations

from typing import Protocol

from kdpipe.config import Params
from kdpipe.kubeflow import dataref, launch
from kdpipe.kubeflow.params import step_params


class Located(Protocol):
    """A kfp artifact, as far as params need it: where its files are."""

    path: str


def task_params(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    dataset: Located,
    *,
    teacher_outputs: Located | None = None,
    checkpoints: bool = False,
    **artifacts: Located,
) -> Params:
    """:func:`~kdpipe.kubeflow.params.step_params` with ``paths.*`` pointed at the task's artifacts.

    ``artifacts``: ``paths.<name>`` -> the artifact holding it (teacher, student, validation);
    ``checkpoints``: the task trains, so its checkpoints go on the PVC under the run id.
    """
    paths = {name: artifact.path for name, artifact in artifacts.items()}
    paths["prepared"] = dataref.local_dir(dataset.path, cache_dir)
    if teacher_outputs is not None:
        paths["teacher_cache"] = launch.teacher_cache_dir(cache_dir, teacher_outputs.path)
    if checkpoints:
        paths["checkpoints"] = launch.scratch_dir(cache_dir, "checkpoints", run_id)
    return step_params(params_yaml, overrides, run_id, **paths)
