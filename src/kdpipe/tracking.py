"""MLflow tracking: one run per pipeline step, tied together by a shared pipeline-run id tag.

A step is its own process under DVC and under Kubeflow, so a parent run would have to be handed
across processes; a tag (``kdpipe.pipeline_run_id``) groups the steps of one pipeline run instead
and works the same from the CLI, DVC and Kubeflow (search ``tags.kdpipe.pipeline_run_id = '...'``).

Every run carries the lineage tags (data sha256, teacher source and version, git commit, kdpipe
version, device), the resolved params flattened, and the resolved ``params.yaml`` as an artifact.
That artifact is the run's first write, so a refusing artifact store fails the step as soon as its
run opens: before training in distill, but after prepare has written its data and after validate
has measured (those steps open their run once their results exist).

MLflow's fluent API (``start_run``, ``log_model``) reads a process-wide tracking URI. kdpipe sets it
only inside :func:`fluent_uri` (around a step's run and a version's registration), and puts the
previous value back after; MLflow itself mirrors it into ``MLFLOW_TRACKING_URI`` for that time.
Every other call goes through an ``MlflowClient`` built for ``tracking.uri``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from kdpipe import __version__, tags
from kdpipe.config import Params
from kdpipe.errors import KdpipeError, TrackingError
from kdpipe.files import PARAMS_FILE
from kdpipe.serving import ServingClassifier
from kdpipe.storage import explain_storage_error

log = logging.getLogger("kdpipe")

PIPELINE_RUN_ENV = "KDPIPE_PIPELINE_RUN_ID"
GIT_COMMIT_ENV = "KDPIPE_GIT_COMMIT"
HEALTH_TIMEOUT_S = 5.0
_TRACKING_MODULES = ("mlflow", "boto3", "botocore", "s3transfer", "requests", "urllib3", "sqlalchemy")


def with_pipeline_run_id(params: Params, environ: Mapping[str, str] = os.environ) -> Params:
    """``params`` with ``tracking.pipeline_run_id`` set: as given, else ``$KDPIPE_PIPELINE_RUN_ID``, else fresh.

    Entry points call this once, so every step they run shares the id; the environment is only read.
    """
    if params.tracking.pipeline_run_id:
        return params
    run_id = environ.get(PIPELINE_RUN_ENV) or uuid.uuid4().hex[:12]
    return params.model_copy(update={"tracking": params.tracking.model_copy(update={"pipeline_run_id": run_id})})


@functools.cache
def git_commit() -> str:
    """The commit of kdpipe's source: ``KDPIPE_GIT_COMMIT`` (set in images), else git, else 'unknown'."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit]


def _from_tracking_stack(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _TRACKING_MODULES


@contextlib.contextmanager
def tracking_errors(params: Params, what: str = "MLflow request") -> Iterator[None]:
    """Turn MLflow, S3 and HTTP failures into one-line :class:`TrackingError` messages."""
    try:
        yield
    except KdpipeError:
        raise
    except Exception as exc:
        if not _from_tracking_stack(exc):
            raise
        cause = explain_storage_error(exc) or _first_line(exc)
        raise TrackingError(f"tracking: {what} failed against {params.tracking.uri}: {cause}") from None


class StepRun:
    """A thin handle on the active MLflow run; every method is a no-op when tracking is off."""

    def __init__(self, active: bool, uri: str = "") -> None:
        self.active = active
        self.uri = uri

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.active:
            import mlflow

            scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            mlflow.log_metrics(scalars, step=step)

    def set_tags(self, values: dict[str, Any]) -> None:
        if self.active:
            import mlflow

            mlflow.set_tags({k: str(v) for k, v in values.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.active and Path(path).exists():
            import mlflow

            mlflow.log_artifact(str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.active:
            import mlflow

            mlflow.log_text(text, artifact_file)

    def log_classifier(self, model: torch.nn.Module, checkpoint: Path, manifest: dict[str, Any],
                       name: str = "student") -> dict[str, str] | None:
        """Log ``model`` as an MLflow model (see :func:`log_classifier`); None when tracking is off."""
        return log_classifier(model, checkpoint, manifest, name, tracking_uri=self.uri) if self.active else None

    @property
    def run_id(self) -> str | None:
        if not self.active:
            return None
        import mlflow

        run = mlflow.active_run()
        return run.info.run_id if run else None


def _probe_server(uri: str) -> None:
    """An HTTP tracking server answers /health at once; MLflow's own client would retry for minutes."""
    import requests

    try:
        resp = requests.get(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S)
    except requests.RequestException as exc:
        reason = "connection refused" if isinstance(exc, requests.ConnectionError) else type(exc).__name__
        raise TrackingError(f"tracking.uri: cannot reach MLflow at {uri} ({reason})") from None
    if resp.status_code >= 500:
        raise TrackingError(f"tracking.uri: MLflow at {uri} is unhealthy (HTTP {resp.status_code} on /health)")


def check_tracking(params: Params) -> str | None:
    """Fail fast, before any training, when the tracking store cannot be reached; returns the experiment id.

    The experiment ``tracking.experiment`` is created when missing; None when tracking is off.
    """
    if not params.tracking.enabled:
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri, name = params.tracking.uri, params.tracking.experiment
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
    try:
        mlflow_client = MlflowClient(tracking_uri=uri)
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return str(mlflow_client.create_experiment(name))
            except MlflowException as exc:  # another step created it first
                if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = mlflow_client.get_experiment_by_name(name)
    except Exception as exc:
        raise TrackingError(f"tracking.uri: cannot reach MLflow at {uri} ({_first_line(exc)})") from None
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"tracking.experiment: {name!r} is deleted in {uri}; restore it or choose another name")
    return str(experiment.experiment_id)


@contextlib.contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (and its local stores' own lookups) on ``uri`` for the body only; the
    process-wide value is put back after."""
    import mlflow
    from mlflow.tracking import is_tracking_uri_set

    previous = mlflow.get_tracking_uri() if is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def lineage_tags(params: Params) -> dict[str, str]:
    """What every run and registered version says about where it came from."""
    return {
        tags.PIPELINE_RUN_ID: str(params.tracking.pipeline_run_id),
        tags.VERSION: __version__,
        tags.GIT_COMMIT: git_commit(),
        tags.TEACHER_SOURCE: params.teacher.source,
    }


@contextlib.contextmanager
def step_run(params: Params, step: str, run_tags: dict[str, Any] | None = None, *, main: bool = True) -> Iterator[StepRun]:
    """Open an MLflow run for one step; a failure ends it FAILED with the reason in a tag.

    ``main`` is false on every DDP rank but 0: those ranks get an inactive handle and never touch
    MLflow. Params without a pipeline run id (``step_run`` used on its own) get one here.
    """
    if not params.tracking.enabled or not main:
        yield StepRun(active=False)
        return
    import mlflow

    params = with_pipeline_run_id(params)

    uri = params.tracking.uri
    experiment_id = check_tracking(params)
    run_name = f"{step}-{params.tracking.pipeline_run_id}"
    with (fluent_uri(uri), tracking_errors(params, f"the {step} run"),
          mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run):
        try:
            mlflow.log_params(flatten(params.to_dict()))
            mlflow.set_tags({tags.STEP: step, **lineage_tags(params), **{k: str(v) for k, v in (run_tags or {}).items()}})
            mlflow.log_text(yaml.safe_dump(params.to_dict(), sort_keys=False), PARAMS_FILE)
            yield StepRun(active=True, uri=uri)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                mlflow.set_tag(tags.ERROR, f"{type(exc).__name__}: {exc}"[:5000])
            with contextlib.suppress(Exception):
                mlflow.end_run(status="FAILED")
            raise
        log.info("%s: MLflow run %s in experiment %r", step, run.info.run_id, params.tracking.experiment)


def log_classifier(model: torch.nn.Module, checkpoint: Path, manifest: dict[str, Any], name: str = "student", *,
                   tracking_uri: str) -> dict[str, str]:
    """Log ``model`` into the active run on ``tracking_uri``, in MLflow 3's form: pt2 export, tensor signature, input example, no projector.

    The exported module is :class:`ServingClassifier` (float images in [0, 1], normalisation inside).
    The kdpipe checkpoint (architecture, classes, weights) rides along in ``extra_files`` so that a
    registered model can serve again as a teacher with its classes checked.
    """
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    shape = tuple(int(s) for s in manifest["shape"])
    classes = list(manifest["classes"])
    net = copy.deepcopy(model).cpu().float().to(memory_format=torch.contiguous_format).eval()
    serving = ServingClassifier(net, manifest["mean"], manifest["std"]).eval()
    example = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(classes)))]),
    )
    info = mlflow.pytorch.log_model(
        serving,
        name=name,
        signature=signature,
        input_example=example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
        extra_files=[str(checkpoint)],
        metadata={
            "classes": classes,
            "input": "float32 images N x C x H x W with values in [0, 1]; normalisation is inside the model",
            "mean": list(manifest["mean"]),
            "std": list(manifest["std"]),
            "data_sha256": manifest["sha256"],
        },
    )
    return {"model_uri": info.model_uri, "model_id": info.model_id, "run_id": info.run_id,
            "tracking_uri": tracking_uri}
