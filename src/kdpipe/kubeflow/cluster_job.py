"""A multi-node training job's life, the same for a Trainer v2 TrainJob and a Training Operator PyTorchJob.

The launcher task is retried by Kubeflow (``RETRIES``); a retry must not find the job it made before and wait on
it forever, nor fail at once on its failure. So every attempt's job has its own name (``<prefix>-<run>-a<N>``) and
the labels of its run, and a launcher, retried or not, first looks at the jobs of its run:

1. a job that succeeded is collected: nothing is created again;
2. a job still running (a launcher that died, not its job) is waited on;
3. otherwise the failed jobs are deleted (kept for inspection with ``kubeflow.keep_jobs: failed | all``) and a
   new attempt is created, which resumes from the last checkpoint on the PVC as the single-pod path does. Its
   number follows both the jobs still there and ``last_attempt`` (what the launcher recorded on the PVC: a
   failed job deleted at its end leaves no trace in the cluster).

It waits at most ``deadline_s`` (the job's own ``activeDeadlineSeconds`` is set below it), deletes its job when
it ends unless told to keep it, and turns Kubernetes' refusals into one line (a 403 names the verb and the
resource the service account lacks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdpipe.infra.errors import KdpipeError
from kdpipe.tracking import tags

log = logging.getLogger("kdpipe")
RUN_LABEL, ATTEMPT_LABEL = tags.K8S_RUN_LABEL, tags.K8S_ATTEMPT_LABEL
PART_OF = {"app.kubernetes.io/part-of": "kdpipe"}
SUCCEEDED, FAILED = "Succeeded", "Failed"
MAX_NAME = 63  # a DNS-1035 label


@dataclass(frozen=True)
class JobKind:
    """A custom resource kind: where it lives in the API, which of its conditions end it, and its pods' label."""

    group: str
    version: str
    plural: str
    kind: str
    succeeded_condition: str
    pod_label: str

    def state(self, job: dict[str, Any]) -> str | None:
        """Succeeded or Failed once the controller says so; None while it runs."""
        for condition in job.get("status", {}).get("conditions", []):
            if condition.get("status") != "True":
                continue
            if condition.get("type") == self.succeeded_condition:
                return SUCCEEDED
            if condition.get("type") == FAILED:
                return FAILED
        return None


@dataclass(frozen=True)
class JobOutcome:
    """The job whose student the launcher collects, its attempt, whether an earlier attempt had already
    succeeded, and the jobs deleted on the way."""

    name: str
    attempt: int
    collected_earlier: bool
    deleted: tuple[str, ...]


def job_name(prefix: str, run_id: str, attempt: int) -> str:
    suffix = f"-a{attempt}"
    return f"{prefix}-{run_id}".lower()[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def labels(run_id: str, attempt: int) -> dict[str, str]:
    return {**PART_OF, RUN_LABEL: run_id[:63], ATTEMPT_LABEL: str(attempt)}


class Jobs:
    """The Kubernetes custom-objects calls for one kind in one namespace, each refusal one line."""

    def __init__(self, api: Any, kind: JobKind, namespace: str) -> None:
        self.api, self.kind, self.namespace = api, kind, namespace

    def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client import ApiException

        k = self.kind
        try:
            return fn(k.group, k.version, self.namespace, k.plural, *args, **kwargs)
        except ApiException as exc:
            resource = f"{k.plural}.{k.group}"
            if exc.status == 403:
                raise KdpipeError(
                    f"Kubernetes refused to {verb} {resource} in namespace {self.namespace} (403 Forbidden): grant "
                    f"this pod's service account '{verb}' on {resource} (docs: Kubeflow, RBAC)"
                ) from None
            if exc.status == 404 and verb in ("create", "list"):
                raise KdpipeError(
                    f"Kubernetes has no {resource} (404 on {verb}): is the {k.kind} controller installed?"
                ) from None
            raise KdpipeError(f"Kubernetes: {verb} {resource} failed ({exc.status} {exc.reason})") from None

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        found = self._call("list", self.api.list_namespaced_custom_object, label_selector=f"{RUN_LABEL}={run_id[:63]}")
        return sorted(found.get("items", []), key=lambda j: int(j["metadata"]["labels"].get(ATTEMPT_LABEL, 0)))

    def create(self, job: dict[str, Any]) -> None:
        self._call("create", self.api.create_namespaced_custom_object, job)

    def get(self, name: str) -> dict[str, Any]:
        return self._call("get", self.api.get_namespaced_custom_object, name)

    def delete(self, name: str) -> None:
        self._call("delete", self.api.delete_namespaced_custom_object, name, propagation_policy="Background")


def _attempt(job: dict[str, Any]) -> int:
    return int(job["metadata"]["labels"].get(ATTEMPT_LABEL, 0))


def _wait(jobs: Jobs, name: str, deadline_s: float, poll_s: float) -> str:
    """Poll ``name`` until it ends; past ``deadline_s`` the job is deleted and the launcher fails."""
    end = time.monotonic() + deadline_s
    while (state := jobs.kind.state(jobs.get(name))) is None:
        if time.monotonic() > end:
            jobs.delete(name)
            raise KdpipeError(
                f"{jobs.kind.kind} {jobs.namespace}/{name} did not finish within {deadline_s:g} s "
                "(kubeflow.job_deadline_s): deleted; its checkpoints stay on the PVC for the next attempt"
            )
        time.sleep(poll_s)
    return state


def run_job(
    jobs: Jobs,
    run_id: str,
    build: Callable[[str, dict[str, str]], dict[str, Any]],
    *,
    prefix: str,
    keep: str,
    deadline_s: float,
    poll_s: float = 30.0,
    last_attempt: int = 0,
) -> JobOutcome:
    """Collect, wait on or create the job of ``run_id`` (see the module docstring); ``build(name, labels)`` makes
    a new attempt's manifest. ``keep``: none, failed or all (which ended jobs stay)."""
    previous, deleted = jobs.of_run(run_id), []
    done = [j for j in previous if jobs.kind.state(j) == SUCCEEDED]
    running = [j for j in previous if jobs.kind.state(j) is None]
    if done:
        name, attempt, state, earlier = done[-1]["metadata"]["name"], _attempt(done[-1]), SUCCEEDED, True
        log.info("%s %s succeeded in an earlier attempt: collected, not rerun", jobs.kind.kind, name)
    else:
        for failed in (j for j in previous if jobs.kind.state(j) == FAILED and keep == "none"):
            jobs.delete(failed["metadata"]["name"])
            deleted.append(failed["metadata"]["name"])
        if running:
            name, attempt = running[-1]["metadata"]["name"], _attempt(running[-1])
            log.info("%s %s is still running (an earlier launcher's): waiting on it", jobs.kind.kind, name)
        else:
            attempt = max([last_attempt, *(_attempt(j) for j in previous)]) + 1
            name = job_name(prefix, run_id, attempt)
            jobs.create(build(name, labels(run_id, attempt)))
            log.info("%s %s/%s created (attempt %d)", jobs.kind.kind, jobs.namespace, name, attempt)
        state, earlier = _wait(jobs, name, deadline_s, poll_s), False
    if keep == "none" or (keep == "failed" and state == SUCCEEDED):
        jobs.delete(name)
        deleted.append(name)
    if state == FAILED:
        raise KdpipeError(
            f"{jobs.kind.kind} {jobs.namespace}/{name} failed (attempt {attempt}); its pods' logs: "
            f"`kubectl logs -n {jobs.namespace} -l {jobs.kind.pod_label}={name}`"
            + ("" if keep != "none" else " (deleted: set kubeflow.keep_jobs: failed to keep it for inspection)")
        )
    return JobOutcome(name, attempt, earlier, tuple(deleted))
