"""What the pipeline's exit handler does when a run ends: tell someone it failed, and tidy the data-cache PVC.

A nightly run that fails at 03:00 should not wait for someone to open the Kubeflow UI. When any task failed,
the exit task POSTs a notice (:class:`Notice`: the run, the failed task, its error line, the links) to
``kubeflow.failure_webhook``, signed as MLflow signs its registry webhooks (the receiver that checks the
registry's champion webhook checks this one with the same code): ``X-MLflow-Signature`` is ``v1,`` + base64
HMAC-SHA256 of ``<delivery id>.<timestamp>.<body>`` with the secret in ``KDPIPE_WEBHOOK_SECRET``.

On the PVC, a run's scratch directories (``runs/<run id>``, ``checkpoints/<run id>``) are removed when it
succeeded; a failed run keeps them for ``--resume`` for ``kubeflow.keep_failed_days`` days, after which a later
run's exit task removes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import shutil
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.tracking import tags, ui_links
from kdpipe.tracking.server import check_tracking

log = logging.getLogger("kdpipe")
RUN_DIRS = ("runs", "checkpoints")  # per-run scratch on the PVC (kubeflow.launch.scratch_dir)
SECRET_ENV = "KDPIPE_WEBHOOK_SECRET"
SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER = "X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id"
DAY_S = 86_400


@dataclass(frozen=True)
class Notice:
    """The JSON a failed night posts: which run, which task, its error line, and where to look."""

    event: str
    pipeline_run_id: str
    job: str
    state: str
    failed_task: str
    error: str
    links: dict[str, str]
    at: str

    def body(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class RunEnd:
    """What the exit task did: the notice it posted (None after a success) and the directories it removed."""

    state: str
    notice: Notice | None
    removed: tuple[str, ...]


def signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    """MLflow's webhook signature: ``v1,`` + base64 HMAC-SHA256 of ``<delivery id>.<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def post(url: str, secret: str, notice: Notice) -> int:
    """POST ``notice`` to ``url``, signed; returns the HTTP status (an unreachable receiver is one error)."""
    body, delivery_id, timestamp = notice.body(), str(uuid.uuid4()), str(int(time.time()))
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id, TIMESTAMP_HEADER: timestamp}
    headers[SIGNATURE_HEADER] = signature(secret, delivery_id, timestamp, body)
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except OSError as exc:
        raise KdpipeError(f"kubeflow.failure_webhook {url}: the failure notice was not delivered ({exc})") from None


def failed_step(params: Params) -> tuple[str, str] | None:
    """The step of this pipeline run whose MLflow run ended FAILED or KILLED, and its ``kdpipe.error``: KFP's
    final status names only the exit handler's group. None when there is none, or MLflow cannot say."""
    run_id = params.tracking.pipeline_run_id
    if not params.tracking.enabled or not run_id:
        return None
    try:
        experiment_id = check_tracking(params)
        from mlflow import MlflowClient

        found = MlflowClient(params.tracking.uri).search_runs(
            [str(experiment_id)],
            f"tags.`{tags.PIPELINE_RUN_ID}` = '{run_id}' and attributes.status != 'FINISHED'",
        )
    except Exception as exc:  # the notice goes out without it: MLflow may be what failed
        log.warning("run end: MLflow could not say which step failed (%s)", str(exc).splitlines()[0])
        return None
    failed = [r for r in found if r.info.status in ("FAILED", "KILLED")]
    if not failed:
        return None
    last = max(failed, key=lambda r: r.info.start_time)
    return last.data.tags.get(tags.STEP, last.info.run_name), last.data.tags.get(tags.ERROR, last.info.status)


def notice(params: Params, state: str, job: str, task: str, error: str) -> Notice:
    """The notice of a run that ended ``state`` (the exit handler's final status of its tasks); the failed step
    and its error as kdpipe's MLflow runs record them, else as KFP reports them."""
    run_id = str(params.tracking.pipeline_run_id or "")
    task, error = failed_step(params) or (task, error)
    links = {
        "mlflow_runs": f"{ui_links.base(params)} (search: tags.`{tags.PIPELINE_RUN_ID}` = '{run_id}')",
        **({"kubeflow_run": url} if (url := ui_links.kubeflow_run(params).get(tags.KUBEFLOW_RUN_URL)) else {}),
    }
    line = next((s.strip() for s in error.splitlines() if s.strip()), "no error message")
    at = datetime.now(UTC).isoformat(timespec="seconds")
    return Notice(tags.FAILURE_EVENT, run_id, job, state, task or "unknown", line, links, at)


def tidy(cache_dir: str, run_id: str, succeeded: bool, keep_failed_days: float, now: float) -> tuple[str, ...]:
    """Remove this run's scratch directories when it succeeded, and any run's older than ``keep_failed_days``."""
    if not cache_dir:
        return ()
    removed = []
    for kind in RUN_DIRS:
        for path in sorted(p for p in Path(cache_dir, kind).glob("*") if p.is_dir()):
            stale = now - path.stat().st_mtime > keep_failed_days * DAY_S
            if (succeeded and path.name == run_id) or stale:
                shutil.rmtree(path)
                removed.append(str(path))
    return tuple(removed)


def finish(params: Params, cache_dir: str, state: str, job: str, task: str, error: str, secret: str) -> RunEnd:
    """Notify (on failure, when ``kubeflow.failure_webhook`` is set) and tidy the PVC; see the module docstring."""
    cfg, run_id = params.kubeflow, str(params.tracking.pipeline_run_id or "")
    succeeded = state == "SUCCEEDED"
    found = None if succeeded else notice(params, state, job, task, error)
    if found is not None and cfg.failure_webhook:
        if not secret:
            raise KdpipeError(f"kubeflow.failure_webhook is set, but {SECRET_ENV} is not (the notice's signing secret)")
        status = post(cfg.failure_webhook, secret, found)
        log.info("run end: %s; the failure notice got HTTP %d from %s", state, status, cfg.failure_webhook)
    removed = tidy(cache_dir, run_id, succeeded, cfg.keep_failed_days, time.time())
    log.info("run end: %s; removed %d scratch director(ies) on the PVC", state, len(removed))
    return RunEnd(state, found, removed)
