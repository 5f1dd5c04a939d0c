"""``kubeflow:``: what the compiled pipeline asks of the cluster, so that no night can hang the schedule.

Read by ``kdpipe pipeline compile`` from the params file it compiles: every task gets a timeout, CPU and memory
requests (and limits) and the pod labels (a Kueue queue, a cost centre); the run gets a deadline and a TTL. The
exit handler reads ``failure_webhook`` and ``keep_failed_days`` at run time (:mod:`kdpipe.kubeflow.run_end`).
The defaults are generous conventions, not measurements: a team sets its own from its nights' durations.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kdpipe.config.section import KeyedError, Section

CPU = r"^[0-9]+(\.[0-9]+)?m?$"
MEMORY = r"^[0-9]+(\.[0-9]+)?([EPTGMK]i?)?$"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
HOUR = 3600


class TaskTimeouts(Section):
    """Seconds each task may run before Kubernetes stops it (its retries get as long again)."""

    prepare_data: int = Field(4 * HOUR, ge=60)
    evaluate_teacher: int = Field(4 * HOUR, ge=60)
    teacher_outputs: int = Field(8 * HOUR, ge=60)
    distill: int = Field(20 * HOUR, ge=60)
    validate_student: int = Field(4 * HOUR, ge=60)
    promote: int = Field(1 * HOUR, ge=60)
    run_end: int = Field(1 * HOUR, ge=60)


class KubeflowConfig(Section):
    timeouts_s: TaskTimeouts = TaskTimeouts()
    run_deadline_s: int = Field(
        23 * HOUR, ge=60, description="the whole run's deadline: a hung night ends before the next one starts"
    )
    ttl_s: int = Field(7 * 24 * HOUR, ge=0, description="how long a finished run's pods and workflow are kept")
    cpu_request: str = Field("2", pattern=CPU, description="every task's CPU request (Kubernetes units: 2, 500m)")
    cpu_limit: str | None = Field(None, pattern=CPU, description="every task's CPU limit; null: none")
    memory_request: str = Field("8Gi", pattern=MEMORY, description="every task's memory request (8Gi, 512Mi)")
    memory_limit: str | None = Field("64Gi", pattern=MEMORY, description="every task's memory limit; null: none")
    trainer_runtime: str = Field(
        "torch-distributed",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="the ClusterTrainingRuntime a multi-node TrainJob names (Kubeflow Trainer v2)",
    )
    job_deadline_s: int = Field(
        19 * HOUR,
        ge=60,
        description="a multi-node job's activeDeadlineSeconds; below timeouts_s.distill, so the launcher reports it",
    )
    keep_jobs: Literal["none", "failed", "all"] = Field(
        "none", description="which ended multi-node jobs stay in the cluster: none, failed (for inspection) or all"
    )
    failure_webhook: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="the exit handler POSTs a signed notice here when any task failed (secret: the credentials "
        "secret's KDPIPE_WEBHOOK_SECRET); null: no notice",
    )
    keep_failed_days: float = Field(
        7.0, ge=0, le=3650, description="a failed run's checkpoints on the PVC are kept this long for --resume"
    )
    labels: dict[str, str] = Field(
        {},
        description="pod labels on every task, e.g. {kueue.x-k8s.io/queue-name: nightly, cost-centre: ml-platform}",
    )

    @model_validator(mode="after")
    def _job_inside_its_launcher(self) -> KubeflowConfig:
        if self.job_deadline_s >= self.timeouts_s.distill:
            raise KeyedError(
                "kubeflow.job_deadline_s",
                f"{self.job_deadline_s} must be below kubeflow.timeouts_s.distill ({self.timeouts_s.distill}): the "
                "launcher waits for the job and reports how it ended",
            )
        return self

    @field_validator("labels")
    @classmethod
    def _kubernetes_labels(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [f"{k}: {v}" for k, v in value.items() if not LABEL_KEY.match(k) or not LABEL_VALUE.match(v)]
        if bad:
            raise ValueError(
                f"not Kubernetes labels (a key of [prefix/]name, a value of at most 63 letters, digits, -, _ and "
                f"., both starting and ending alphanumeric): {', '.join(bad)}"
            )
        return value
