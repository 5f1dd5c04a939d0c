"""MLflow runs: the one way kdpipe opens one (:func:`open_run`), and a pipeline step's run (:func:`step_run`).

Every kdpipe run, a step's and the study's parent, cell and seed runs alike, is opened by :func:`open_run`
in the store :class:`Store` reached: created with its tags, params and parent, ended FINISHED with its block
or FAILED with the reason. A run someone else opened for kdpipe (KFP's MLflow integration opens one per task,
nested under one per pipeline run, and ends them itself) is adopted there (``tracking.task_run_id``): the step
tags and logs into it and leaves it open, so a cluster with that integration gets one run per step, not two.

One run per pipeline step, tied together by a shared pipeline-run id tag:

A step is its own process under DVC and under Kubeflow, so a parent run would have to be handed
across processes; a tag (``kdpipe.pipeline_run_id``) groups the steps of one pipeline run instead
and works the same from the CLI, DVC and Kubeflow (search ``tags.kdpipe.pipeline_run_id = '...'``).

Every run carries the lineage tags (data sha256, teacher source and version, git commit, kdpipe
version, device), the resolved params flattened, and the resolved ``params.yaml`` as an artifact.
That artifact is the run's first write, so a refusing artifact store fails the step as soon as its
run opens: before training in distill, but after prepare has written its data and after validate
has measured (those steps open their run once their results exist).

Runs are opened, logged to and closed through an ``MlflowClient`` (:mod:`kdpipe.tracking.server`).
Metrics and tags logged while a step works go through a queue that a background thread sends
(:mod:`kdpipe.tracking.async_logging`), so training never waits on MLflow; the step waits for the
queue, at most ``tracking.retry_seconds``, only before its artifact uploads and at its end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from kdpipe.config import Params
from kdpipe.infra import files
from kdpipe.infra.errors import Terminated, TrackingOutageError
from kdpipe.tracking import tags, ui_links
from kdpipe.tracking.async_logging import AsyncRunLogger
from kdpipe.tracking.lineage import lineage_tags
from kdpipe.tracking.run_handle import StepRun
from kdpipe.tracking.server import check_tracking, reachable, tracking_errors

log = logging.getLogger("kdpipe")
FAILED_FLUSH_S = 10.0  # how long a failing step still waits for its queued metrics before ending FAILED
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 6000  # MLflow's longest param value
ERROR_CHARS = 5000  # how much of a failure's message the error tag keeps


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Store:
    """Where runs are opened: a client on ``tracking.uri`` and the id of ``tracking.experiment``."""

    params: Params
    client: Any
    experiment_id: str

    @classmethod
    def reach(cls, params: Params) -> Store:
        """Fail fast when the store is away (:func:`check_tracking`, which creates the experiment when missing)."""
        experiment_id = check_tracking(params)
        from mlflow import MlflowClient

        return cls(params, MlflowClient(tracking_uri=params.tracking.uri), str(experiment_id))


def log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    """``params`` on the run, as strings of at most :data:`MAX_PARAM_CHARS` (the client batches the request)."""
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()])


def _continue(client: Any, run_id: str, run_tags: dict[str, str]) -> None:
    """Tag a run opened before and drop the error an earlier attempt left on it: it ends as this one does."""
    from mlflow.entities import RunTag

    if tags.ERROR in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, tags.ERROR)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in run_tags.items()])


@contextlib.contextmanager
def open_run(
    store: Store,
    name: str,
    run_tags: dict[str, Any],
    *,
    parent: str | None = None,
    params: dict[str, Any] | None = None,
    resume: str | None = None,
    what: str | None = None,
    adopted: bool = False,
) -> Iterator[str]:
    """Open an MLflow run for the block and end it; yields its id. The one way kdpipe's runs come into being.

    The run is created in the store's experiment as ``name``, tagged with ``run_tags`` (as strings), the child of
    ``parent`` when given, with ``params`` logged (:func:`log_params`). With ``resume`` (a run id) that run is
    continued instead: tagged and logged to the same way. The run ends FINISHED with the block, or FAILED with
    the reason in ``kdpipe.error`` when the block raises while the store still answers (KILLED, with the reason,
    on SIGTERM: :mod:`kdpipe.infra.termination`); after an outage it is left
    RUNNING (a step's next run in the same place closes it). ``adopted``: the run ``resume`` names belongs to
    someone else who ends it (KFP's MLflow integration): it is tagged and logged to, and never ended here. MLflow's
    own errors become one-line :class:`TrackingError` messages naming ``what`` (default: the run's name).
    """
    client, what = store.client, what or f"the {name} run"
    all_tags = {k: str(v) for k, v in {**run_tags, **({PARENT_TAG: parent} if parent else {})}.items()}
    with tracking_errors(store.params, what):
        if resume is None:
            run_id = str(client.create_run(store.experiment_id, run_name=name, tags=all_tags).info.run_id)
        else:
            run_id = resume
            _continue(client, run_id, all_tags)
    try:
        with tracking_errors(store.params, what):
            if params:
                log_params(client, run_id, params)
            yield run_id
            if not adopted:
                client.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        if not isinstance(exc, TrackingOutageError) and reachable(store.params.tracking.uri):
            with contextlib.suppress(Exception):
                client.set_tag(run_id, tags.ERROR, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
            with contextlib.suppress(Exception):
                if not adopted:
                    client.set_terminated(run_id, "KILLED" if isinstance(exc, Terminated) else "FAILED")
        raise


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
    uri, what = params.tracking.uri, f"the {step} run"
    store = Store.reach(params)
    client = store.client
    if owner is not None:
        with tracking_errors(params, what):
            _close_abandoned(client, store.experiment_id, step, owner)
    workdir = {tags.WORKDIR: owner} if owner else {}
    step_tags = {tags.STEP: step, **workdir, **lineage_tags(params), **(run_tags or {})}
    pipeline_run_id = str(params.tracking.pipeline_run_id)
    name, flat = f"{step}-{pipeline_run_id}", flatten(params.to_dict())
    adopt = params.tracking.task_run_id
    if adopt:  # KFP's task run: its experiment is KFP's, and KFP ends it
        with tracking_errors(params, what):
            store = dataclasses.replace(store, experiment_id=str(client.get_run(adopt).info.experiment_id))
    with open_run(store, name, step_tags, params=flat, what=what, resume=adopt, adopted=bool(adopt)) as run_id:
        sender = AsyncRunLogger(client, run_id, reachable=functools.partial(reachable, uri))
        run = StepRun(client, run_id, uri, sender, params.tracking.retry_seconds, step, pipeline_run_id, rerun)
        monitor = _system_monitor(params, run_id) if system_metrics else None
        try:
            with tracking_errors(params, what):
                # the resolved params.yaml: the run's first artifact write
                client.log_text(run_id, yaml.safe_dump(params.to_dict(), sort_keys=False), files.PARAMS_FILE)
                log.info("%s: MLflow run %s", step, ui_links.run(params, store.experiment_id, run_id))
                yield run
                run.wait_online()
                if monitor is not None:
                    monitor.finish()
        except BaseException as exc:
            if not isinstance(exc, TrackingOutageError) and reachable(uri):
                if monitor is not None:
                    monitor.finish()  # its thread is a daemon: after an outage it is left to the process's end
                sender.flush(min(FAILED_FLUSH_S, params.tracking.retry_seconds))
            raise  # open_run ends the run FAILED with the reason
        finally:
            sender.close()
