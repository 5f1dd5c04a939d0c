"""`kdpipe study`: the evidence that the recipe is worth it, reproducible and resumable.

On the prepared data set, with one fixed teacher and one training budget (params.yaml's), the
student is trained under every cell of :mod:`kdpipe.study.cells` with several seeds, then a table,
a plot and the results are written and, when tracking is on, logged to MLflow. Finished runs are
kept; rerunning the same command continues an interrupted study, and once every run is finished
it only rewrites the report and logs what MLflow does not have yet. ``--tune`` trains the tuning grids
(:mod:`kdpipe.study.grids`) instead and chooses each method's setting on val (:mod:`kdpipe.study.tuning`).
"""

from __future__ import annotations

import argparse
import json
import logging
import uuid
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.errors import ConfigError, KdpipeError
from kdpipe.files import file_sha256, write_json
from kdpipe.model_file import MODEL_FILE
from kdpipe.study import fanout, runner
from kdpipe.study.cells import gap_cells
from kdpipe.study.fanout import STUDY_FILE
from kdpipe.study.grids import tuning_cells
from kdpipe.study.plan import SMALL_TEACHER, make_plan
from kdpipe.tracking import check_tracking

log = logging.getLogger("kdpipe")

DEFAULT_DIR = "artifacts/study"
DEFAULT_SEEDS = (0, 1, 2)
TUNE_DIR = "artifacts/study-tune"
TUNE_SEEDS = (0,)
CONFIRM_DIR = "artifacts/study-confirm"
CONFIRM_SEEDS = (3, 4, 5, 6, 7)
CONFIRM_DATA_SEEDS = (1, 2)
CONFIRM_CELLS = ("scratch", "kd", "fitnet", "srd", "srd_no_feat", "srd_frozen_proj", "srd_norm_none")
"""The baselines, the recipe and the ablations the stability curves compare; the capacity gap comes too."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help=f"study directory (default: {DEFAULT_DIR}; with --tune {TUNE_DIR}, with --confirm "
                   f"{CONFIRM_DIR})")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2; with --tune 0; with --confirm 3-7)")
    p.add_argument("--data-seeds", type=int, nargs="+", metavar="SEED", help="run every seed on each transfer set "
                   "these draw (train.subset_seed; default: the one data.seed draws; with --confirm 1 2)")
    p.add_argument("--cells", nargs="+", metavar="CELL", help="only these cells (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel worker processes (default: 1)")
    p.add_argument("--small-teacher", default=SMALL_TEACHER, help=f"capacity gap: small teacher (default: {SMALL_TEACHER})")
    p.add_argument("--large-teacher", help="capacity gap: large teacher (default: the study's own teacher, teacher.arch)")
    p.add_argument("--no-gap", action="store_true", help="leave out the capacity-gap sweep")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    p.add_argument("--tune", action="store_true", help="train each method's tuning grid (12 settings of kd, fitnet and "
                   "srd each) and choose every method's setting on val top-1; writes tuning.json")
    p.add_argument("--confirm", action="store_true", help="confirm on data used for no choice: the baselines, srd and "
                   "its ablations (and the capacity gap) on fresh transfer sets (data seeds 1 2) x seeds 3-7, paired intervals")


def selection(args: argparse.Namespace) -> tuple[list[str] | None, list[int], bool, list[int] | None]:
    """The cells, seeds, capacity gap and data seeds a command line asks for: ``--tune`` is the tuning grids at seed
    0 with no gap; ``--confirm`` the confirmation cells and the gap on data seeds 1 2 x seeds 3-7."""
    if args.tune and args.confirm:
        raise ConfigError("--tune and --confirm are separate studies; give one")
    if (args.tune or args.confirm) and args.cells:
        raise ConfigError(f"--{'tune' if args.tune else 'confirm'} names its own cells; leave out --cells")
    if args.tune:
        return [c.name for c in tuning_cells()], list(args.seeds or TUNE_SEEDS), False, args.data_seeds
    if args.confirm:
        cells = [*CONFIRM_CELLS, *(c.name for c in gap_cells())] if not args.no_gap else list(CONFIRM_CELLS)
        return cells, list(args.seeds or CONFIRM_SEEDS), not args.no_gap, list(args.data_seeds or CONFIRM_DATA_SEEDS)
    return args.cells, list(args.seeds or DEFAULT_SEEDS), not args.no_gap, args.data_seeds


def directory(args: argparse.Namespace) -> Path:
    return Path(args.dir or (TUNE_DIR if args.tune else CONFIRM_DIR if args.confirm else DEFAULT_DIR))


def run_from_args(params: Params, args: argparse.Namespace, command: str | None = None) -> dict[str, Any]:
    cells, seeds, gap, data_seeds = selection(args)
    return run_study(
        params, directory(args), seeds=seeds, cells=cells, jobs=args.jobs, small_teacher=args.small_teacher,
        large_teacher=args.large_teacher, gap=gap, plot=not args.no_plot, command=command, data_seeds=data_seeds,
    )


def _study_id(study_dir: Path) -> str:
    """The study's identity travels with its directory, so MLflow knows it wherever it is logged."""
    path = study_dir / STUDY_FILE
    if path.exists():
        return str(json.loads(path.read_text())["study_id"])
    study_id = uuid.uuid4().hex[:12]
    write_json(path, {"study_id": study_id})
    return study_id


def _teacher_tasks(base: Params, study_dir: Path, roles: set[str], archs: dict[str, str], threads: int) -> list[dict[str, Any]]:
    tasks = []
    for role in sorted(roles):
        record = study_dir / runner.TEACHERS_DIR / f"{role}.json"
        model = runner.teacher_dir(base, study_dir, role) / MODEL_FILE
        known = json.loads(record.read_text()).get("model_sha256") if record.exists() else None
        if known and model.exists() and known == file_sha256(model):
            continue
        params = runner.teacher_params(base, study_dir, role, archs[role], threads)
        tasks.append({"id": f"teacher {role} ({archs[role]})", "role": role, "params": params.to_dict(), "record": str(record)})
    return tasks


def _teachers(study_dir: Path) -> dict[str, dict[str, Any]]:
    folder = study_dir / runner.TEACHERS_DIR
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.exists() else {}


def run_study(
    base: Params, study_dir: Path, *, seeds: list[int] | tuple[int, ...] = DEFAULT_SEEDS, cells: list[str] | None = None,
    jobs: int = 1, small_teacher: str = SMALL_TEACHER, large_teacher: str | None = None, gap: bool = True,
    plot: bool = True, command: str | None = None, data_seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Run what is not finished, then report; returns which runs ran, which were kept, and the files."""
    seeds = list(seeds)
    plan = make_plan(base, cells, seeds, gap=gap, small_teacher=small_teacher, large_teacher=large_teacher,
                     data_seeds=data_seeds)
    if jobs < 1:
        raise ConfigError(f"--jobs: must be at least 1, got {jobs}")
    check_tracking(base)
    chosen, archs = list(plan.cells), plan.archs
    study_id = _study_id(study_dir)
    threads = max(1, (base.runtime.num_threads or runner.cores()) // jobs)
    runs = [runner.make_run(base, study_dir, c, s, archs, threads, d) for d in plan.data_seeds for s in seeds for c in chosen]
    results = {r.id: runner.read_result(r) for r in runs}
    pending = [r for r in runs if results[r.id] is None]
    kept = [r.id for r in runs if results[r.id] is not None]
    log.info("study %s in %s: %d run(s) to do, %d finished already; %d job(s) x %d thread(s)", study_id, study_dir,
             len(pending), len(kept), jobs, threads)
    failures: dict[str, str] = {}
    if pending:
        runner.ensure_prepared(base)
        roles = {r.teacher_role for r in pending if r.needs_teacher}
        teacher_tasks = _teacher_tasks(base, study_dir, roles, archs, threads)

        def teacher_done(task: dict[str, Any], info: dict[str, Any]) -> None:
            log.info("study: teacher %s %s: test top-1 %.4f", info["role"], info["arch"], info["test_top1"])

        failures |= runner.execute(runner.execute_teacher, teacher_tasks, jobs, threads, teacher_done)
        failed_roles = {t["role"] for t in teacher_tasks if t["id"] in failures}
        todo = [r for r in pending if not (r.needs_teacher and r.teacher_role in failed_roles)]
        tasks = [runner.run_task(r) for r in todo]

        def run_done(task: dict[str, Any], result: dict[str, Any]) -> None:
            results[task["id"]] = result
            finished = sum(v is not None for v in results.values())
            log.info("study: %d/%d finished: %s test top-1 %.4f, val %.4f (%.1f s training)", finished, len(runs),
                     task["id"], result["test_top1"], result["val_top1"], result["train_seconds"])

        failures |= runner.execute(runner.execute_run, tasks, jobs, threads, run_done)
    if failures:
        raise KdpipeError(
            f"study: {len(failures)} task(s) failed ({'; '.join(f'{k}: {v}' for k, v in failures.items())}); "
            "rerun the same command to retry them (finished runs are kept)"
        )
    finished = [res for r in runs if (res := results[r.id]) is not None]
    published = fanout.publish(base, plan, study_id, finished, list(_teachers(study_dir).values()), study_dir, command,
                               plot)
    log.info("study: report in %s", published["files"]["report"])
    return {**published, "ran": [r.id for r in pending], "kept": kept}
