"""Talking to a Kubeflow Pipelines API (v2beta1, through kfp.Client): start a run, keep one schedule.

Recurring runs cannot be edited through the API, so "update" means: create the new schedule, then
delete the old ones of the same name. A failure in between leaves the old schedule running rather
than none; the end state is exactly one recurring run with the name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kdpipe.infra.errors import KdpipeError

TOKEN_ENV = "KF_PIPELINES_TOKEN"


def kfp_cron(expression: str) -> str:
    """Kubeflow's cron has a leading seconds field: ``0 2 * * *`` becomes ``0 0 2 * * *``."""
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise KdpipeError(
        f"--cron {expression!r}: expected 5 fields (minute hour day month weekday) or 6 with seconds first"
    )


def connect(host: str) -> Any:
    """A kfp.Client for ``host``; a bearer token, if needed, comes from $KF_PIPELINES_TOKEN."""
    import kfp

    return kfp.Client(host=host, existing_token=os.environ.get(TOKEN_ENV) or None)


def _package(path: Path) -> str:
    if not path.exists():
        raise KdpipeError(f"{path}: no compiled pipeline; run `kdpipe pipeline compile` first")
    return str(path)


def submit(host: str, package: Path, arguments: dict[str, Any], experiment: str, run_name: str | None) -> str:
    """Start one run of the compiled pipeline; returns its run id."""
    client = connect(host)
    result = client.create_run_from_pipeline_package(
        _package(package), arguments=arguments, run_name=run_name, experiment_name=experiment
    )
    return str(result.run_id)


def _recurring_runs_named(client: Any, experiment_id: str, name: str) -> list[Any]:
    by_name = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found, token = [], ""
    while True:
        page = client.list_recurring_runs(experiment_id=experiment_id, filter=by_name, page_token=token, page_size=100)
        found += [r for r in page.recurring_runs or [] if r.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return found


def schedule(
    host: str, package: Path, cron: str, name: str, experiment: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """Create the recurring run ``name``, replacing any existing one of that name in ``experiment``."""
    cron = kfp_cron(cron)
    client = connect(host)
    experiment_id = client.create_experiment(name=experiment).experiment_id
    previous = _recurring_runs_named(client, experiment_id, name)
    created = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        cron_expression=cron,
        pipeline_package_path=_package(package),
        params=arguments,
        max_concurrency=1,
        no_catchup=True,
    )
    for old in previous:
        client.delete_recurring_run(old.recurring_run_id)
    return {
        "recurring_run_id": created.recurring_run_id,
        "action": "updated" if previous else "created",
        "replaced": [old.recurring_run_id for old in previous],
    }
