"""MLflow tracking: one run per pipeline step, tied together by a shared pipeline-run id tag.

A step is its own process under DVC and under Kubeflow, so a parent run would have to be handed
across processes; a tag (``kdpipe.pipeline_run_id``) groups the steps of one pipeline run instead
and works the same from the CLI, DVC and Kubeflow (search ``tags.kdpipe.pipeline_run_id = '...'``).

Every run carries the lineage tags (data sha256, teacher source and version, git commit, kdpipe
version, device), the resolved params flattened, and the resolved ``params.yaml`` as an artifact.
That artifact is the run's first write, so a refusing artifact store fails the step as soon as its
run opens: before training in distill, but after prepare has written its data and after validate
has measured (those steps open their run once their results exist).

Runs are opened, logged to and closed through an ``MlflowClient`` built for ``tracking.uri``, never
through a process-wide active run. Metrics and tags logged while a step works go through a queue
that a background thread sends (:mod:`kdpipe.tracking.async_logging`), so training never waits on MLflow;
the step waits for the queue, at most ``tracking.retry_seconds``, only before its artifact uploads
and at its end. Only ``log_model`` and registration use MLflow's fluent API, which reads a
process-wide tracking URI: kdpipe sets it only inside :func:`fluent_uri` and puts the previous value
back after; MLflow itself mirrors it into ``MLFLOW_TRACKING_URI`` for that time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import torch
import yaml

from kdpipe import __version__
from kdpipe.config import Params
from kdpipe.infra import files
from kdpipe.infra.errors import KdpipeError, TrackingError, TrackingOutageError
from kdpipe.infra.storage import explain_storage_error
from kdpipe.models.serving import ServingClassifier
from kdpipe.tracking import datasets, tags, ui_links
from kdpipe.tracking.async_logging import AsyncRunLogger

log = logging.getLogger("kdpipe")

GIT_COMMIT_ENV = "KDPIPE_GIT_COMMIT"
HEALTH_TIMEOUT_S = 5.0
TRAINING_KIND = "custom_model_development"  # MLflow's experiment kind for model training (not GenAI)
FAILED_FLUSH_S = 10.0  # how long a failing step still waits for its queued metrics before ending FAILED
_TRACKING_MODULES = ("mlflow", "boto3", "botocore", "s3transfer", "requests", "urllib3", "sqlalchemy")


@functools.cache
def git_commit() -> str:
    """The commit of kdpipe's source: ``KDPIPE_GIT_COMMIT`` (set in images), else git, else 'unknown'."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
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
    """A handle on one step's MLflow run; every method is a no-op when tracking is off.

    Metrics and tags go through an :class:`AsyncRunLogger` and never block. Artifacts and models
    are sent at once, after the queue has drained: when MLflow stays away for ``retry_seconds``
    the step ends with :class:`TrackingOutageError`, its files already written.
    """

    def __init__(
        self,
        client: Any = None,
        run_id: str = "",
        uri: str = "",
        sender: AsyncRunLogger | None = None,
        retry_seconds: float = 0.0,
        step: str = "",
        pipeline_run_id: str = "",
        rerun: str | None = None,
    ) -> None:
        self.active = client is not None
        self.client, self.run_id, self.uri, self.sender = client, run_id, uri, sender
        self.retry_seconds, self.step, self.pipeline_run_id = retry_seconds, step, pipeline_run_id
        self.rerun = rerun
        self.logged_steps: set[int] = set()

    def log_metrics(
        self,
        metrics: dict[str, Any],
        step: int | None = None,
        *,
        model_id: str | None = None,
        dataset: tuple[str, str] | None = None,
    ) -> None:
        """Numbers only; ``model_id`` and ``dataset`` (name, digest) link them to a LoggedModel's page."""
        if self.sender is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        dataset_name, dataset_digest = dataset or (None, None)
        self.sender.put(
            metrics=[
                Metric(
                    k,
                    float(v),
                    now,
                    step or 0,
                    model_id=model_id,
                    dataset_name=dataset_name,
                    dataset_digest=dataset_digest,
                    run_id=self.run_id,
                )
                for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
        )
        if step is not None:
            self.logged_steps.add(step)

    def log_epochs(self, history: list[dict[str, Any]]) -> None:
        """Each epoch's record at its step, unless this run logged it already (a resumed run's earlier epochs)."""
        for record in history:
            if record["epoch"] not in self.logged_steps:
                self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, record["epoch"])

    def set_tags(self, values: dict[str, Any]) -> None:
        if self.sender is not None:
            from mlflow.entities import RunTag

            self.sender.put(tags=[RunTag(k, str(v)) for k, v in values.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.active and Path(path).exists():
            self.wait_online()
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.active:
            self.wait_online()
            self.client.log_text(self.run_id, text, artifact_file)

    def log_classifier(
        self, model: torch.nn.Module, checkpoint: Path, manifest: dict[str, Any], name: str = "student"
    ) -> dict[str, str] | None:
        """Log ``model`` as an MLflow model (see :func:`log_classifier`); None when tracking is off."""
        if not self.active:
            return None
        self.wait_online()
        return log_classifier(model, checkpoint, manifest, name, tracking_uri=self.uri, run_id=self.run_id)

    def log_onnx(self, exported: dict[str, Path], manifest: dict[str, Any]) -> dict[str, str]:
        """Log each exported file (by the version tag that will point at it) with the onnx flavour; returns
        {tag: model URI}, empty with tracking off."""
        if not self.active:
            return {}
        self.wait_online()
        return {
            tag: log_onnx_model(path, manifest, path.stem, tracking_uri=self.uri, run_id=self.run_id)
            for tag, path in exported.items()
        }

    def log_student(self, model: torch.nn.Module, model_path: Path, manifest: dict[str, Any]) -> None:
        """Log the student as the MLflow model ``student`` and note where beside its file, for the steps
        after; with tracking off, remove a note that would describe another model."""
        note = model_path.parent / files.MODEL_RECORD_FILE
        logged = self.log_classifier(model, model_path, manifest)
        if logged:
            files.write_json(note, {**logged, "model_sha256": files.file_sha256(model_path)})
        else:
            note.unlink(missing_ok=True)

    def log_datasets(
        self, manifest: dict[str, Any], directory: Path, contexts: dict[str, str], extra: tuple[Any, ...] = ()
    ) -> None:
        """The splits this step read, as MLflow dataset inputs (``contexts``: split -> what it was used for),
        and ``extra`` inputs (other data sets it read)."""
        if self.active:
            self.wait_online()
            self.client.log_inputs(
                self.run_id,
                datasets=[
                    datasets.split_input(manifest, split, directory, context) for split, context in contexts.items()
                ]
                + list(extra),
            )

    def describe(self, markdown: str) -> None:
        """The run page's description."""
        self.set_tags({tags.RUN_DESCRIPTION: markdown})

    def wait_online(self) -> None:
        """Return once every queued metric and tag is stored; raise after ``retry_seconds`` without MLflow."""
        if self.sender is None or self.sender.flush(self.retry_seconds):
            return
        down = time.monotonic() - (self.sender.down_since or time.monotonic())
        raise TrackingOutageError(
            f"tracking: MLflow at {self.uri} has not answered for {down:.0f} s ({self.sender.last_error}); "
            "gave up after "
            f"tracking.retry_seconds={self.retry_seconds:g} with {self.sender.unsent} update(s) unsent. The files this "
            f"step wrote are complete on disk: once MLflow is back, {self._rerun_hint()}"
        )

    def _rerun_hint(self) -> str:
        if self.rerun is None:
            return f"run the {self.step} step again; it closes the run left open ({self.run_id})"
        return (
            f"`{self.rerun}` logs them under pipeline run id {self.pipeline_run_id} and closes the run left open "
            f"({self.run_id})"
        )


def logged_student(params: Params, model_path: Path) -> dict[str, str] | None:
    """Where distill logged the student in ``model_path`` (its model URI, LoggedModel id and run), when
    the note beside it describes these bytes in this tracking store; else None."""
    note = model_path.parent / files.MODEL_RECORD_FILE
    if not note.exists() or not model_path.exists():
        return None
    logged = files.read_json(note)
    same = (
        logged.get("model_sha256") == files.file_sha256(model_path)
        and logged.get("tracking_uri") == params.tracking.uri
    )
    return logged if same else None


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


def lineage_tags(params: Params) -> dict[str, str]:
    """What every run and registered version says about where it came from."""
    return {
        tags.PIPELINE_RUN_ID: str(params.tracking.pipeline_run_id),
        tags.VERSION: __version__,
        tags.GIT_COMMIT: git_commit(),
        tags.TEACHER_SOURCE: params.teacher.source,
        **ui_links.kubeflow_run(params),
    }


def _reachable(uri: str) -> bool:
    """True unless an HTTP tracking server fails its /health probe (local stores are always there)."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        _probe_server(uri)
    except TrackingError:
        return False
    return True


def _close_abandoned(client: Any, experiment_id: str, step: str, owner: str) -> None:
    """End FAILED the RUNNING runs this step left in this place when MLflow went away mid-step.

    The caller holds the lock on ``owner``'s directory, so no live process can still own them.
    """
    running = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tags.STEP}` = '{step}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for stale in running:
        if stale.data.tags.get(tags.WORKDIR) != owner:
            continue
        client.set_tag(
            stale.info.run_id,
            tags.ERROR,
            f"abandoned: MLflow became unreachable during this {step} step; closed when the step ran again in {owner}",
        )
        client.set_terminated(stale.info.run_id, "FAILED")
        log.warning("%s: closed run %s (left RUNNING when MLflow went away) as FAILED", step, stale.info.run_id)


def _create_run(
    client: Any, experiment_id: str, params: Params, step: str, run_tags: dict[str, Any], owner: str | None
) -> str:
    """Create the step's run with its lineage tags, after closing the ones it abandoned; returns its id."""
    if owner is not None:
        _close_abandoned(client, experiment_id, step, owner)
    all_tags = {tags.STEP: step, **({tags.WORKDIR: owner} if owner else {}), **lineage_tags(params), **run_tags}
    run = client.create_run(
        experiment_id,
        run_name=f"{step}-{params.tracking.pipeline_run_id}",
        tags={k: str(v) for k, v in all_tags.items()},
    )
    return str(run.info.run_id)


def _log_params(client: Any, run_id: str, params: Params) -> None:
    """The resolved params, flattened, and ``params.yaml``: the run's first artifact write."""
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in flatten(params.to_dict()).items()])
    client.log_text(run_id, yaml.safe_dump(params.to_dict(), sort_keys=False), files.PARAMS_FILE)


def _system_monitor(params: Params, run_id: str) -> Any:
    """MLflow's system-metrics sampler on ``run_id``, started; None when ``tracking.system_metrics_seconds`` is null."""
    if params.tracking.system_metrics_seconds is None:
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=params.tracking.system_metrics_seconds, tracking_uri=params.tracking.uri
    )
    monitor.start()
    return monitor


@contextlib.contextmanager
def step_run(
    params: Params,
    step: str,
    run_tags: dict[str, Any] | None = None,
    *,
    owner: str | None = None,
    rerun: str | None = None,
    main: bool = True,
    system_metrics: bool = False,
) -> Iterator[StepRun]:
    """Open an MLflow run for one step; end it FINISHED, or FAILED with the reason in a tag.

    ``system_metrics``: sample CPU, memory, disk, network and (with NVML) GPU every
    ``tracking.system_metrics_seconds`` into the run's ``system/*`` metrics, from a thread of MLflow's.

    ``main`` is false on every DDP rank but 0: those ranks get an inactive handle and never touch
    MLflow. ``params.tracking.pipeline_run_id`` must be set: it groups the steps of one pipeline run.
    ``owner`` is the place whose lock the caller holds (tagged on the run): a run that cannot be ended
    because MLflow is gone stays RUNNING until a run of the same step is opened with the same owner,
    which ends it FAILED. ``rerun`` is the command named when an outage ends the step.
    """
    if not params.tracking.enabled or not main:
        yield StepRun()
        return
    if not params.tracking.pipeline_run_id:
        raise ValueError(f"step_run({step!r}): params.tracking.pipeline_run_id is not set")
    from mlflow import MlflowClient

    uri = params.tracking.uri
    experiment_id = check_tracking(params)
    client = MlflowClient(tracking_uri=uri)
    with tracking_errors(params, f"the {step} run"):
        run_id = _create_run(client, str(experiment_id), params, step, run_tags or {}, owner)
    sender = AsyncRunLogger(client, run_id, reachable=functools.partial(_reachable, uri))
    run = StepRun(
        client, run_id, uri, sender, params.tracking.retry_seconds, step, str(params.tracking.pipeline_run_id), rerun
    )
    monitor = _system_monitor(params, run_id) if system_metrics else None
    try:
        with tracking_errors(params, f"the {step} run"):
            _log_params(client, run_id, params)
            log.info("%s: MLflow run %s", step, ui_links.run(params, str(experiment_id), run_id))
            yield run
            run.wait_online()
            if monitor is not None:
                monitor.finish()
            client.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        if not isinstance(exc, TrackingOutageError) and _reachable(uri):
            if monitor is not None:
                monitor.finish()  # its thread is a daemon: after an outage it is left to the process's end
            sender.flush(min(FAILED_FLUSH_S, params.tracking.retry_seconds))
            with contextlib.suppress(Exception):
                client.set_tag(run_id, tags.ERROR, f"{type(exc).__name__}: {exc}"[:5000])
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
        raise
    finally:
        sender.close()


def _logged_model_id(tracking_uri: str, run_id: str | None, name: str) -> str | None:
    """Without an active run, the LoggedModel is made in the run's experiment (not the fluent one)."""
    if run_id is None:
        return None
    import mlflow

    mlflow_client = mlflow.MlflowClient(tracking_uri)
    run = mlflow_client.get_run(run_id)
    return str(
        mlflow_client.create_logged_model(
            run.info.experiment_id, name=name, source_run_id=run_id, params=run.data.params
        ).model_id
    )


def _tensor_signature(shape: tuple[int, ...], classes: int) -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes))]),
    )


def log_onnx_model(path: Path, manifest: dict[str, Any], name: str, *, tracking_uri: str, run_id: str) -> str:
    """Log the ONNX file ``path`` into run ``run_id`` with MLflow's onnx flavour (signature, input example,
    the CPU execution provider first) and return its model URI."""
    import mlflow
    import numpy as np
    import onnx

    shape = tuple(int(s) for s in manifest["shape"])
    example = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    with fluent_uri(tracking_uri):
        info = mlflow.onnx.log_model(
            onnx.load(str(path)),
            name=name,
            run_id=run_id,
            model_id=_logged_model_id(tracking_uri, run_id, name),
            signature=_tensor_signature(shape, len(manifest["classes"])),
            input_example=example,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
            pip_requirements=[
                f"onnx=={onnx.__version__}",
                f"onnxruntime=={_version('onnxruntime')}",
                f"mlflow=={mlflow.__version__}",
            ],
            metadata={
                "classes": list(manifest["classes"]),
                "data_sha256": manifest["sha256"],
                "input": "float32 images N x C x H x W with values in [0, 1]; normalisation is inside the model",
            },
        )
    return str(info.model_uri)


def log_classifier(
    model: torch.nn.Module,
    checkpoint: Path,
    manifest: dict[str, Any],
    name: str = "student",
    *,
    tracking_uri: str,
    run_id: str | None = None,
) -> dict[str, str]:
    """Log ``model`` into run ``run_id`` (default: the active run) on ``tracking_uri``, in MLflow 3's form.

    The form: pt2 export, tensor signature, input example, no projector.

    The exported module is :class:`ServingClassifier` (float images in [0, 1], normalisation inside).
    The kdpipe checkpoint (architecture, classes, weights) rides along in ``extra_files`` so that a
    registered model can serve again as a teacher with its classes checked.
    """
    import mlflow
    import numpy as np

    shape = tuple(int(s) for s in manifest["shape"])
    classes = list(manifest["classes"])
    net = copy.deepcopy(model).cpu().float().to(memory_format=torch.contiguous_format).eval()
    serving = ServingClassifier(net, manifest["mean"], manifest["std"]).eval()
    example = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    signature = _tensor_signature(shape, len(classes))
    with fluent_uri(tracking_uri):
        info = mlflow.pytorch.log_model(
            serving,
            name=name,
            run_id=run_id,
            model_id=_logged_model_id(tracking_uri, run_id, name),
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
    return {"model_uri": info.model_uri, "model_id": info.model_id, "run_id": info.run_id, "tracking_uri": tracking_uri}
