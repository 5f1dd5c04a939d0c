"""``tracking:``: the MLflow server, experiment, registered model and the links between runs."""

from __future__ import annotations

from pydantic import Field, field_validator

from kdpipe.config.section import Section


class TrackingConfig(Section):
    enabled: bool = True
    uri: str = "sqlite:///mlruns.db"
    experiment: str = Field("kdpipe", min_length=1)
    registered_model: str = Field("kdpipe-student", min_length=1)
    pipeline_run_id: str | None = Field(
        None,
        min_length=1,
        description="groups the steps of one pipeline run in MLflow; null: "
        "$KDPIPE_PIPELINE_RUN_ID, else a fresh id per command",
    )
    kubeflow_run_id: str | None = Field(
        None,
        description="set by the Kubeflow components: the KFP run, tagged on every step run (kdpipe.kubeflow_run_id)",
    )
    task_run_id: str | None = Field(
        None,
        description="set by the Kubeflow components when KFP's MLflow integration opened a run for the task "
        "(MLFLOW_RUN_ID): the step logs into that run and leaves ending it to KFP; null: the step opens its own",
    )
    kubeflow_ui_url: str | None = Field(
        None,
        description="the Kubeflow Pipelines UI, e.g. https://kubeflow.example/pipeline; with it each step run "
        "is tagged with a link to its KFP run (kdpipe.kubeflow_run_url)",
    )
    ui_url: str | None = Field(
        None,
        description="the MLflow UI that links point at; null: the tracking server when tracking.uri is "
        "http(s), else http://127.0.0.1:5000 (what `mlflow ui` serves)",
    )
    system_metrics_seconds: float | None = Field(
        10.0, gt=0, description="how often the distill run samples CPU, memory and GPU into system/* metrics; null: off"
    )
    retry_seconds: float = Field(
        120.0,
        ge=0,
        description="how long a step, its work done, waits for an unreachable MLflow to come back "
        "before it ends with a one-line error (its files are written either way)",
    )

    @field_validator("uri")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """Params are logged to MLflow: a password here would end up in every run."""
        from urllib.parse import urlsplit

        if urlsplit(value).password is not None:
            raise ValueError(
                "must not contain credentials; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "in the environment instead"
            )
        return value
