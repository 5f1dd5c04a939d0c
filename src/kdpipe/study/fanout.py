"""The study as tasks that can each run in its own pod: a role's teacher, its outputs, one run, the report.

``kdpipe study`` runs these steps in worker processes on one machine. The Kubeflow study pipeline
(``pipelines/study_pipeline.py``) runs each one as a task:
- a teacher per role;
- that teacher's outputs, once for each set of views its runs replay;
- one distill task per (cell, seed), in a ``ParallelFor``;
- a report step that collects the results.

Every function takes params whose ``paths.*`` already point at the task's artifacts. Results
travel as plain JSON, and the report is written by the same code, so both ways write the same
report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.files import fingerprint, write_json
from kdpipe.kubeflow.params import with_paths
from kdpipe.study import diverged, runner, threads
from kdpipe.study.plan import TUNE_PHASE, Plan
from kdpipe.study.report import write_report
from kdpipe.study.summary import summarise
from kdpipe.study.tasks import TeacherTask

STUDY_FILE = "study.json"


def study_id(kubeflow_run_id: str) -> str:
    """A Kubeflow study's id: the same for every retry of its report step, so MLflow logs it once."""
    return fingerprint({"kubeflow_run_id": kubeflow_run_id})[:12]


def _run(base: Params, plan: Plan, cell: str, seed: int, work: Path, data_seed: int | None = None) -> runner.Run:
    """The study's run of ``cell`` under ``seed`` (on ``data_seed``'s transfer set), taught by the teacher at
    ``paths.teacher``, its files under ``work``."""
    each = threads.available(base.runtime)
    run = runner.make_run(base, work, plan.cell(cell), seed, plan.archs, each, data_seed, plan.excluding)
    return dataclasses.replace(
        run, params=with_paths(run.params, teacher=base.paths.teacher, student=base.paths.student)
    )


def teacher(base: Params, plan: Plan, role: str, work: Path) -> dict[str, Any]:
    """Load or train ``role``'s teacher into ``paths.teacher`` and measure it as ``kdpipe study`` does; its record."""
    params = runner.teacher_params(base, work, role, plan.archs[role], threads.available(base.runtime))
    params = with_paths(params, teacher=base.paths.teacher, checkpoints=str(work / "checkpoints"))
    task = TeacherTask(f"teacher {role} ({plan.archs[role]})", role, work / f"{role}.json", params.to_dict())
    return runner.execute_teacher(task)


def teacher_outputs(base: Params, plan: Plan, role: str, work: Path) -> dict[str, Any]:
    """Record ``role``'s teacher outputs once for each set of views its runs replay, as the local study does.

    Cells differ in the method, which is not part of the cache key, so the runs of a (transfer set, seed) share one
    fill; in the data-budget phase each size of the transfer set is a fill of its own (:func:`runner.fill_tasks`).
    """
    runs = [_run(base, plan, r["cell"], r["seed"], work, r.get("data_seed")) for r in plan.runs(role)]
    fills = [
        {"id": task.id, **runner.execute_fill(task)}
        for task in runner.fill_tasks(runs, threads.available(base.runtime))
    ]
    return {
        "role": role,
        "fills": fills,
        "recorded": sum(f["recorded"] for f in fills),
        "bytes": sum(f["bytes"] for f in fills),
    }


def one_run(base: Params, plan: Plan, item: dict[str, Any], work: Path) -> dict[str, Any]:
    """Train the run ``item`` names (one of :meth:`Plan.runs`: cell, seed, data seed) into ``paths.student``,
    resuming from ``work``, and measure it; its result."""
    data_seed = (
        None if item.get("data_seed") is None else int(item["data_seed"])
    )  # loop items' numbers arrive as floats
    run = _run(base, plan, str(item["cell"]), int(item["seed"]), work, data_seed)
    return runner.execute_run(runner.run_task(run))


def publish(
    base: Params,
    plan: Plan,
    study_id: str,
    results: list[dict[str, Any]],
    teachers: list[dict[str, Any]],
    study_dir: Path,
    command: str | None,
    plot: bool = True,
) -> dict[str, Any]:
    """The report, plot, results and, with tracking on, the MLflow parent, cell and seed runs; from the runs'
    results and the teachers' records alone, wherever they were computed; a diverged run stops any phase but the
    tuning here (:func:`kdpipe.study.diverged.refuse`), before anything is written."""
    if plan.phase != TUNE_PHASE:
        diverged.refuse(results)
    order = {c.name: i for i, c in enumerate(plan.cells)}
    results = sorted(
        results,
        key=lambda r: (plan.data_seeds.index(r.get("data_seed")), plan.seeds.index(r["seed"]), order[r["cell"]]),
    )
    write_json(study_dir / STUDY_FILE, {"study_id": study_id})
    by_role = {t["role"]: t for t in teachers}
    files = write_report(study_dir, study_id, base, plan, results, by_role, command, plot)
    summary: dict[str, Any] = {"study_id": study_id, "files": {k: str(v) for k, v in files.items()}}
    if base.tracking.enabled:
        from kdpipe.study.mlflow_log import log_study

        summary["mlflow"] = log_study(
            base, study_id, summarise(list(plan.cells), results, plan.archs), files, plan.phase
        )
    return summary
