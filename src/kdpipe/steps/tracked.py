"""A step's MLflow run, opened from its descriptor: the run is owned by the place whose lock the step holds,
and an outage names the step's own rerun command."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from kdpipe.config import Params
from kdpipe.steps.spec import Step
from kdpipe.steps.workdir import owner
from kdpipe.tracking.run_handle import StepRun
from kdpipe.tracking.runs import step_run


def tracked_run(
    params: Params,
    step: Step,
    run_tags: dict[str, Any] | None = None,
    *,
    main: bool = True,
    system_metrics: bool = False,
) -> AbstractContextManager[StepRun]:
    """:func:`kdpipe.tracking.runs.step_run` for ``step``, under the run id :func:`~kdpipe.steps.workdir.claims` set."""
    return step_run(
        params,
        step.name,
        run_tags,
        owner=owner(params, step),
        rerun=step.rerun,
        main=main,
        system_metrics=system_metrics,
    )
