"""MLflow tracking: one run per pipeline step, tied together by a shared pipeline-run id tag.

A step is its own process under DVC and under Kubeflow, so a parent run would have to be handed
across processes; a tag (``kdpipe.pipeline_run_id``) groups the steps of one pipeline run instead
and works the same from the CLI, DVC and Kubeflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdpipe import __version__
from kdpipe.config import Params
from kdpipe.errors import TrackingError

log = logging.getLogger("kdpipe")

PIPELINE_RUN_ENV = "KDPIPE_PIPELINE_RUN_ID"


def pipeline_run_id() -> str:
    """The id shared by the steps of one pipeline run; set once per process when absent."""
    if not os.environ.get(PIPELINE_RUN_ENV):
        os.environ[PIPELINE_RUN_ENV] = uuid.uuid4().hex[:12]
    return os.environ[PIPELINE_RUN_ENV]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


class StepRun:
    """A thin handle on the active MLflow run; every method is a no-op when tracking is off."""

    def __init__(self, active: bool) -> None:
        self.active = active

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.active:
            import mlflow

            scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            mlflow.log_metrics(scalars, step=step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.active:
            import mlflow

            mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.active and Path(path).exists():
            import mlflow

            mlflow.log_artifact(str(path), artifact_path)

    @property
    def run_id(self) -> str | None:
        if not self.active:
            return None
        import mlflow

        run = mlflow.active_run()
        return run.info.run_id if run else None


def check_tracking(params: Params) -> None:
    """Fail fast, before any training, when the tracking store cannot be reached."""
    if not params.tracking.enabled:
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(params.tracking.uri)
    try:
        mlflow.set_experiment(params.tracking.experiment)
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"tracking.uri: cannot reach MLflow at {params.tracking.uri} ({first})") from None


@contextlib.contextmanager
def step_run(params: Params, step: str, tags: dict[str, Any] | None = None) -> Iterator[StepRun]:
    """Open an MLflow run for one step; a failure ends it FAILED with the reason in a tag."""
    if not params.tracking.enabled:
        yield StepRun(active=False)
        return
    import mlflow

    check_tracking(params)
    with mlflow.start_run(run_name=f"{step}-{pipeline_run_id()}") as run:
        mlflow.log_params(flatten(params.to_dict()))
        mlflow.set_tags(
            {
                "kdpipe.step": step,
                "kdpipe.pipeline_run_id": pipeline_run_id(),
                "kdpipe.version": __version__,
                **{k: str(v) for k, v in (tags or {}).items()},
            }
        )
        handle = StepRun(active=True)
        try:
            yield handle
        except BaseException as exc:
            mlflow.set_tag("kdpipe.error", f"{type(exc).__name__}: {exc}"[:5000])
            mlflow.end_run(status="FAILED")
            raise
        log.info("%s: MLflow run %s in experiment %r", step, run.info.run_id, params.tracking.experiment)
