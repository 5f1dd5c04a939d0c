"""Links into the MLflow UI that open the model-training view, never the GenAI overview.

MLflow 3's UI picks its view from a ``workflowType`` query parameter: without it an experiment
opens on "Overview" (traces, token usage), with ``workflowType=machine_learning`` on "Model
training" (runs, models, registry). Every link kdpipe prints or writes is made here.
"""

from __future__ import annotations

from urllib.parse import quote

from kdpipe.config import Params
from kdpipe.tracking import tags

WORKFLOW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def base(params: Params) -> str:
    """``tracking.ui_url``; else the tracking server itself; else what `mlflow ui` serves locally."""
    if params.tracking.ui_url:
        return params.tracking.ui_url.rstrip("/")
    uri = params.tracking.uri
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI


def experiment(params: Params, experiment_id: str) -> str:
    """The experiment's training runs."""
    return f"{base(params)}/#/experiments/{experiment_id}?{WORKFLOW}"


def run(params: Params, experiment_id: str, run_id: str) -> str:
    return f"{base(params)}/#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW}"


def registered_model(params: Params, name: str) -> str:
    return f"{base(params)}/#/models/{quote(name)}?{WORKFLOW}"


def kubeflow_run(params: Params) -> dict[str, str]:
    """The KFP run a step belongs to, as tags: its id, and a link when ``tracking.kubeflow_ui_url`` is known."""
    run_id, ui = params.tracking.kubeflow_run_id, params.tracking.kubeflow_ui_url
    if not run_id:
        return {}
    return {
        tags.KUBEFLOW_RUN_ID: run_id,
        **({tags.KUBEFLOW_RUN_URL: f"{ui.rstrip('/')}/#/runs/details/{run_id}"} if ui else {}),
    }


def model_version(params: Params, name: str, version: str) -> str:
    return f"{base(params)}/#/models/{quote(name)}/versions/{version}?{WORKFLOW}"
