"""The pipeline's exit handler (kdpipe.kubeflow.run_end): a signed notice to a real HTTP receiver when a night
failed, none when it succeeded, and the data-cache PVC's per-run directories tidied.

The handler's function is called directly here, against a real ``mlflow server`` and a real receiver; the whole
pipeline under kfp.local, whose exit handler runs it with kfp.local's final status, is in
test_kubeflow_local.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.kubeflow import run_end
from kdpipe.tracking import tags
from webhook_receiver import receiving, signed_with

SECRET = "night-watch-secret"


def _night(make_params: Callable[..., Params], server: str, url: str | None, run_id: str) -> Params:
    """Params as the exit task reads them: tracking on the real server, the pipeline run id set."""
    params = make_params(tracking__uri=server, tracking__experiment=f"nights-{run_id}")
    tracking = params.tracking.model_copy(update={"pipeline_run_id": run_id, "kubeflow_run_id": run_id})
    kubeflow = params.kubeflow.model_copy(update={"failure_webhook": url})
    return params.model_copy(update={"tracking": tracking, "kubeflow": kubeflow})


def _scratch(cache: Path, run_id: str, age_days: float = 0.0) -> list[Path]:
    """``runs/<id>`` and ``checkpoints/<id>`` on the PVC, each holding a file, last written ``age_days`` ago."""
    made = []
    for kind in run_end.RUN_DIRS:
        path = cache / kind / run_id
        path.mkdir(parents=True)
        (path / "checkpoint.pt").write_bytes(b"weights")
        stamp = time.time() - age_days * run_end.DAY_S
        os.utime(path, (stamp, stamp))
        made.append(path)
    return made


def test_a_failed_night_posts_one_signed_notice_naming_the_failed_step_and_keeps_its_checkpoints(
    make_params: Callable[..., Params], mlflow_server: str, tmp_path: Path
) -> None:
    """The failed step and its error come from kdpipe's own MLflow run of that step (here one made as a step's
    FAILED run is); the run's checkpoints stay for --resume, another run's older than keep_failed_days go."""
    from mlflow import MlflowClient

    run_id = f"night-{uuid.uuid4().hex[:8]}"
    with receiving() as receiver:
        params = _night(make_params, mlflow_server, receiver.url, run_id)
        client = MlflowClient(mlflow_server)
        experiment = client.create_experiment(params.tracking.experiment)
        step_tags = {tags.PIPELINE_RUN_ID: run_id, tags.STEP: "distill"}
        for status, error in (("FINISHED", None), ("FAILED", "NonFiniteLossError: loss is nan in epoch 3\nmore")):
            run = client.create_run(experiment, tags={**step_tags, **({tags.ERROR: error} if error else {})})
            client.set_terminated(run.info.run_id, status)
        kept, stale = _scratch(tmp_path, run_id), _scratch(tmp_path, "night-old", age_days=8)
        ended = run_end.finish(
            params, str(tmp_path), "FAILED", "kdpipe-distill-x", "exit-handler-1", "Task failed.", SECRET
        )
    ((headers, body),) = receiver.calls
    assert signed_with(SECRET, headers, body)
    (notice,) = receiver.bodies()
    assert notice["event"] == "kdpipe.pipeline_run.failed" and notice["state"] == "FAILED"
    assert (notice["pipeline_run_id"], notice["job"]) == (run_id, "kdpipe-distill-x")
    assert (notice["failed_task"], notice["error"]) == ("distill", "NonFiniteLossError: loss is nan in epoch 3")
    assert run_id in notice["links"]["mlflow_runs"]
    assert ended.notice is not None and ended.notice.body() == body.decode()
    assert all(p.is_dir() for p in kept) and not any(p.exists() for p in stale)
    assert sorted(ended.removed) == sorted(map(str, stale))


def test_a_night_that_succeeded_posts_nothing_and_removes_its_own_scratch(
    make_params: Callable[..., Params], mlflow_server: str, tmp_path: Path
) -> None:
    with receiving() as receiver:
        params = _night(make_params, mlflow_server, receiver.url, "night-good")
        own, recent_failure = _scratch(tmp_path, "night-good"), _scratch(tmp_path, "night-failed", age_days=2)
        ended = run_end.finish(params, str(tmp_path), "SUCCEEDED", "job", "exit-handler-1", "", SECRET)
    assert receiver.calls == [] and ended.notice is None
    assert not any(p.exists() for p in own) and all(p.is_dir() for p in recent_failure)


def test_without_kdpipes_record_the_notice_names_what_kubeflow_reports_and_a_missing_secret_is_one_error(
    make_params: Callable[..., Params], mlflow_server: str, tmp_path: Path
) -> None:
    """A step that failed before opening its MLflow run (bad data at prepare) leaves KFP's own words; a
    webhook without its signing secret, and a receiver that does not answer, are each one clear error."""
    with receiving() as receiver:
        params = _night(make_params, mlflow_server, receiver.url, f"night-{uuid.uuid4().hex[:8]}")
        run_end.finish(params, "", "FAILED", "job", "exit-handler-1", "Task exit-handler-1 failed.\n", SECRET)
        with pytest.raises(KdpipeError, match="KDPIPE_WEBHOOK_SECRET is not"):
            run_end.finish(params, "", "FAILED", "job", "exit-handler-1", "", "")
    (notice,) = receiver.bodies()
    assert (notice["failed_task"], notice["error"]) == ("exit-handler-1", "Task exit-handler-1 failed.")
    with pytest.raises(KdpipeError, match=r"kubeflow\.failure_webhook http://127\.0\.0\.1:9/x: .*not delivered"):
        gone = params.model_copy(
            update={"kubeflow": params.kubeflow.model_copy(update={"failure_webhook": "http://127.0.0.1:9/x"})}
        )
        run_end.finish(gone, "", "FAILED", "job", "exit-handler-1", "", SECRET)
