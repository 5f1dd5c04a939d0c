"""Params for one component: the pipeline's params YAML, its overrides, and the artifact paths.

Every component receives the whole params file as a string parameter (so a run records exactly
what it ran with) and points ``paths.*`` at its own input and output artifact directories.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from kdpipe.config import Params, apply_overrides, params_from_dict
from kdpipe.infra.errors import ConfigError

ORIGIN = "pipeline parameter params_yaml"
KFP_TASK_RUN_ENV = "MLFLOW_RUN_ID"  # the task's MLflow run, where KFP's MLflow integration (KFP 2.17+) opened one


def step_params(params_yaml: str, overrides: list[str], run_id: str = "", **paths: str) -> Params:
    """Validate ``params_yaml`` plus ``KEY=VALUE`` overrides, then set the given ``paths.*``.

    ``run_id`` (the Kubeflow run's id) becomes ``tracking.pipeline_run_id``, the MLflow tag that
    groups the steps of one run, and ``tracking.kubeflow_run_id``; with it, the MLflow run KFP opened for this
    task (``MLFLOW_RUN_ID``, set where KFP's MLflow integration is on) becomes ``tracking.task_run_id``, so that
    the step logs there instead of opening a second run.
    """
    try:
        raw: Any = yaml.safe_load(params_yaml) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{ORIGIN}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{ORIGIN}: top level must be a mapping of sections")
    raw = apply_overrides(raw, list(overrides))
    if run_id:
        tracking = raw.setdefault("tracking", {})
        if not isinstance(tracking, dict):
            raise ConfigError(f"{ORIGIN}: tracking must be a mapping")
        tracking["pipeline_run_id"] = tracking["kubeflow_run_id"] = run_id
        if os.environ.get(KFP_TASK_RUN_ENV):
            tracking["task_run_id"] = os.environ[KFP_TASK_RUN_ENV]
    if paths:
        section = raw.setdefault("paths", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{ORIGIN}: paths must be a mapping")
        section.update(paths)
    return params_from_dict(raw, origin=ORIGIN)


def with_paths(params: Params, **paths: str) -> Params:
    """The same params with some ``paths.*`` moved (already validated, so nothing to check again)."""
    return params.model_copy(update={"paths": params.paths.model_copy(update=paths)})


def dump_params(params: Params) -> str:
    """The YAML that :func:`kdpipe.config.load_params` reads back to the same params."""
    return yaml.safe_dump(params.to_dict(), sort_keys=False)


def one_line(params_yaml: str) -> str:
    """The same params as single-line (flow-style) YAML.

    kfp writes each input's default into a comment header of the compiled file; a multi-line
    default would break that header out of the comment and make the file invalid YAML.
    """
    return yaml.safe_dump(
        yaml.safe_load(params_yaml) or {}, default_flow_style=True, sort_keys=False, width=1_000_000
    ).strip()
