"""Reaching the tracking store: fail fast when it is away, and one-line errors from MLflow, S3 and HTTP.

Runs are opened, logged to and closed through an ``MlflowClient`` built for ``tracking.uri``, never
through a process-wide active run. Only ``log_model`` and registration use MLflow's fluent API, which
reads a process-wide tracking URI: kdpipe sets it only inside :func:`fluent_uri` and puts the previous
value back after; MLflow itself mirrors it into ``MLFLOW_TRACKING_URI`` for that time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError, TrackingError
from kdpipe.infra.storage import explain_storage_error
from kdpipe.tracking import tags

HEALTH_TIMEOUT_S = 5.0
TRAINING_KIND = "custom_model_development"  # MLflow's experiment kind for model training (not GenAI)
_TRACKING_MODULES = ("mlflow", "boto3", "botocore", "s3transfer", "requests", "urllib3", "sqlalchemy")


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
                return str(mlflow_client.create_experiment(name, tags={tags.EXPERIMENT_KIND: TRAINING_KIND}))
            except MlflowException as exc:  # another step created it first
                if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = mlflow_client.get_experiment_by_name(name)
    except Exception as exc:
        raise TrackingError(f"tracking.uri: cannot reach MLflow at {uri} ({_first_line(exc)})") from None
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"tracking.experiment: {name!r} is deleted in {uri}; restore it or choose another name")
    if tags.EXPERIMENT_KIND not in experiment.tags:
        with tracking_errors(params, "tagging the experiment"):
            mlflow_client.set_experiment_tag(experiment.experiment_id, tags.EXPERIMENT_KIND, TRAINING_KIND)
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


def reachable(uri: str) -> bool:
    """True unless an HTTP tracking server fails its /health probe (local stores are always there)."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        _probe_server(uri)
    except TrackingError:
        return False
    return True
