"""``kdpipe study`` on one machine: what is not finished runs in worker processes, then the report.

The teachers a pending run needs are trained or measured first, then their outputs recorded once per set of
views, then the runs; a failing task does not stop the others, and the study fails at the end naming them all.
Finished runs are kept, so rerunning the same command continues an interrupted study; once every run is
finished it only rewrites the report and logs what MLflow does not have yet (:func:`kdpipe.study.fanout.publish`,
which the Kubeflow study's report step calls too).
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import ConfigError, KdpipeError
from kdpipe.infra.files import write_json
from kdpipe.study import diverged, fanout, runner, threads
from kdpipe.study.cells import Cell
from kdpipe.study.fanout import STUDY_FILE
from kdpipe.study.phases import MAIN
from kdpipe.study.plan import SMALL_TEACHER, make_plan
from kdpipe.study.tasks import FillTask, RunTask, TeacherTask, execute
from kdpipe.teacher.stored import payload_sha256
from kdpipe.tracking.server import check_tracking

log = logging.getLogger("kdpipe")


def _study_id(study_dir: Path, join: Path | None = None) -> str:
    """The study's identity travels with its directory, so MLflow knows it wherever it is logged; a study that
    joins another takes that one's, so both log into one parent run."""
    path = study_dir / STUDY_FILE
    joined = str(json.loads((join / STUDY_FILE).read_text())["study_id"]) if join else None
    if path.exists():
        own = str(json.loads(path.read_text())["study_id"])
        if joined and own != joined:
            log.warning(
                "study: %s began as study %s before it joined %s; it keeps its own MLflow parent", study_dir, own, join
            )
        return own
    study_id = joined or uuid.uuid4().hex[:12]
    write_json(path, {"study_id": study_id})
    return study_id


def _teacher_tasks(
    base: Params, study_dir: Path, roles: set[str], archs: dict[str, str], jobs: int
) -> tuple[list[TeacherTask], int]:
    """The teachers to train or measure, and the threads each gets: the cores shared by those at once, so a
    lone teacher (the large one takes longest) does not train on one core of several."""
    todo = []
    for role in sorted(roles):
        record = study_dir / runner.TEACHERS_DIR / f"{role}.json"
        model = runner.stored_teacher(runner.teacher_dir(base, study_dir, role))
        known = json.loads(record.read_text()) if record.exists() else {}
        same = model is not None and known.get("model_sha256") == payload_sha256(model)
        if not (same and known.get("measured") == runner.measured(base)):
            todo.append((role, record))
    each = threads.per_worker(base.runtime, min(jobs, len(todo)))
    tasks = [
        TeacherTask(
            f"teacher {role} ({archs[role]})",
            role,
            record,
            runner.teacher_params(base, study_dir, role, archs[role], each).to_dict(),
        )
        for role, record in todo
    ]
    return tasks, each


def _teachers(study_dir: Path) -> dict[str, dict[str, Any]]:
    folder = study_dir / runner.TEACHERS_DIR
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.exists() else {}


def run_study(
    base: Params,
    study_dir: Path,
    *,
    seeds: list[int] | tuple[int, ...] = MAIN.seeds,
    cells: list[str] | None = None,
    jobs: int = 1,
    small_teacher: str = SMALL_TEACHER,
    large_teacher: str | None = None,
    gap: bool = True,
    plot: bool = True,
    command: str | None = None,
    data_seeds: list[int] | None = None,
    join: Path | None = None,
    phase: str = MAIN.name,
    extra: tuple[Cell, ...] = (),
    publish: bool = True,
    paired: bool = False,
    excluding: int | None = None,
    corrected: bool = False,
) -> dict[str, Any]:
    """Run what is not finished, then report; returns which runs ran, which were kept, and the files. With
    ``join`` (a study directory) the study takes that study's id: one MLflow parent run holds both. ``extra``:
    cells built for this call (the tuning rounds'), found by name beside the catalogue's. ``publish`` false: no
    report and no MLflow, only the finished runs' results (a tuning round before the last)."""
    seeds = list(seeds)
    plan = make_plan(
        base,
        cells,
        seeds,
        gap=gap,
        small_teacher=small_teacher,
        large_teacher=large_teacher,
        data_seeds=data_seeds,
        phase=phase,
        extra=extra,
        paired=paired,
        excluding=excluding,
        corrected=corrected,
    )
    if jobs < 1:
        raise ConfigError(f"--jobs: must be at least 1, got {jobs}")
    check_tracking(base)
    chosen, archs = list(plan.cells), plan.archs
    study_id = _study_id(study_dir, join)
    each = threads.per_worker(base.runtime, jobs)
    runs = [
        runner.make_run(base, study_dir, c, s, archs, each, d, plan.excluding)
        for d, s in plan.replicates()
        for c in chosen
    ]
    results = {r.id: runner.read_result(r) for r in runs}
    pending = [r for r in runs if results[r.id] is None]
    kept = [r.id for r in runs if results[r.id] is not None]
    log.info(
        "study %s in %s: %d run(s) to do, %d finished already; %d job(s) x %d thread(s)",
        study_id,
        study_dir,
        len(pending),
        len(kept),
        jobs,
        each,
    )
    failures: dict[str, str] = {}
    if pending:
        runner.ensure_prepared(base)
        roles = {r.teacher_role for r in pending if r.needs_teacher}
        teacher_tasks, teacher_threads = _teacher_tasks(base, study_dir, roles, archs, jobs)

        def teacher_done(task: TeacherTask, info: dict[str, Any]) -> None:
            log.info("study: teacher %s %s: test top-1 %.4f", info["role"], info["arch"], info["test_top1"])

        failures |= execute(runner.execute_teacher, teacher_tasks, jobs, teacher_threads, teacher_done)
        failed_roles = {t.role for t in teacher_tasks if t.id in failures}
        todo = [r for r in pending if not (r.needs_teacher and r.teacher_role in failed_roles)]

        def fill_done(task: FillTask, info: dict[str, Any]) -> None:
            log.info("study: %s: %d epoch(s) recorded", task.id, info["recorded"])

        fills = runner.fill_tasks(todo, threads.available(base.runtime))
        for task_id, error in execute(runner.execute_fill, fills, 1, each, fill_done).items():
            log.warning("study: %s failed (%s); its runs record the teacher's outputs as they train", task_id, error)

        def run_done(task: RunTask, result: dict[str, Any]) -> None:
            results[task.id] = result
            finished = sum(v is not None for v in results.values())
            if diverged.DIVERGED in result:
                log.warning("study: %d/%d finished: %s diverged: %s", finished, len(runs), task.id, result["diverged"])
                return
            log.info(
                "study: %d/%d finished: %s test top-1 %.4f, val %.4f (%.1f s training)",
                finished,
                len(runs),
                task.id,
                result["test_top1"],
                result["val_top1"],
                result["train_seconds"],
            )

        failures |= execute(runner.execute_run, [runner.run_task(r) for r in todo], jobs, each, run_done)
    if failures:
        raise KdpipeError(
            f"study: {len(failures)} task(s) failed ({'; '.join(f'{k}: {v}' for k, v in failures.items())}); "
            "rerun the same command to retry them (finished runs are kept)"
        )
    finished = [res for r in runs if (res := results[r.id]) is not None]
    if not publish:
        return {"results": finished, "ran": [r.id for r in pending], "kept": kept}
    published = fanout.publish(
        base, plan, study_id, finished, list(_teachers(study_dir).values()), study_dir, command, plot
    )
    log.info("study: report in %s", published["files"]["report"])
    return {**published, "ran": [r.id for r in pending], "kept": kept}
