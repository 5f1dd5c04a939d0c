"""MLflow tracking: one run per pipeline step, tied together by a shared pipeline-run id tag.

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
import functools
import logging
from collections.abc import Iterator
from typing import Any

import yaml

from kdpipe.config import Params
from kdpipe.infra import files
from kdpipe.infra.errors import TrackingOutageError
from kdpipe.tracking import tags, ui_links
from kdpipe.tracking.async_logging import AsyncRunLogger
from kdpipe.tracking.lineage import lineage_tags
from kdpipe.tracking.run_handle import StepRun
from kdpipe.tracking.server import check_tracking, reachable, tracking_errors

log = logging.getLogger("kdpipe")
FAILED_FLUSH_S = 10.0  # how long a failing step still waits for its queued metrics before ending FAILED


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


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
    sender = AsyncRunLogger(client, run_id, reachable=functools.partial(reachable, uri))
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
        if not isinstance(exc, TrackingOutageError) and reachable(uri):
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
