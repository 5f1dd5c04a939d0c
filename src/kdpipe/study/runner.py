"""Running the study's cells: one fixed teacher, one budget, every run through ``kdpipe.steps``.

A run is one cell under one seed. It trains with :func:`kdpipe.steps.distill` (the one training
loop) with its own student and checkpoint paths under the study directory, then writes
``result.json`` atomically. A run whose result exists for the same training params is never rerun;
an interrupted one resumes from its last epoch checkpoint. The ``execute_*`` functions are the worker
side of the study's tasks (:mod:`kdpipe.study.tasks`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe import identity, steps
from kdpipe.config import Params, apply_overrides, params_from_dict
from kdpipe.data.prepared import MANIFEST_FILE, load_prepared
from kdpipe.infra import files
from kdpipe.infra.errors import NonFiniteLossError, TeacherMismatchError
from kdpipe.models import count_parameters
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.study import diverged
from kdpipe.study.cells import Cell
from kdpipe.study.measure import corrupted_top1, int8_top1, top1, top1_and_test_hits
from kdpipe.study.tasks import FillTask, RunTask, TeacherTask
from kdpipe.study.threads import machine
from kdpipe.teacher import cache as teacher_cache
from kdpipe.teacher import source as teacher
from kdpipe.teacher import stored
from kdpipe.tracking import tags
from kdpipe.training.runtime import make_runtime
from kdpipe.training.student_init import init_sha256

log = logging.getLogger("kdpipe")

RESULT_FILE = "result.json"
TEACHERS_DIR = "teachers"
RUNS_DIR = "runs"


@dataclass(frozen=True)
class Run:
    cell: Cell
    seed: int
    params: Params
    overrides: tuple[str, ...]
    """What makes the run this cell and seed on top of params.yaml (not where its files go): ``kdpipe distill``
    with these reruns it by hand."""
    directory: Path
    data_seed: int | None = None
    """``train.subset_seed``: the transfer set's own seed; None keeps ``data.seed``'s."""

    @property
    def id(self) -> str:
        return f"{self.cell.name}/{replicate(self.seed, self.data_seed)}"

    @property
    def teacher_role(self) -> str:
        return self.cell.gap_role or "main"

    @property
    def needs_teacher(self) -> bool:
        return self.params.method.name != "scratch"


def replicate(seed: int, data_seed: int | None) -> str:
    """A run's name within its cell: ``seed3``, or ``data1-seed3`` on the transfer set drawn by data seed 1."""
    return f"seed{seed}" if data_seed is None else f"data{data_seed}-seed{seed}"


def training_fingerprint(params: Params) -> str:
    """What decides a run's result (:func:`kdpipe.identity.run_fingerprint`)."""
    p = params
    return identity.run_fingerprint(
        data=p.data,
        teacher=p.teacher,
        student=p.student,
        method=p.method,
        cache=p.cache,
        train=p.train,
        init_sha256=init_sha256(p.student, p.tracking),
    )


def measured(params: Params) -> dict[str, Any]:
    """What decides a run's measurements beyond its training (:func:`kdpipe.identity.measurement`). A finished run or
    teacher measured with other settings is measured again; a run resumes after its last epoch, so nothing retrains."""
    return identity.measurement(params.validate_, params.export)


def teacher_dir(base: Params, study_dir: Path, role: str) -> Path:
    """The study's fixed teacher lives at ``paths.teacher``; the gap sweep's teachers in the study."""
    return Path(base.paths.teacher) if role == "main" else study_dir / TEACHERS_DIR / role


def _quoted(path: Path) -> str:
    return json.dumps(str(path))


def make_run(
    base: Params,
    study_dir: Path,
    cell: Cell,
    seed: int,
    teacher_archs: dict[str, str],
    threads: int,
    data_seed: int | None = None,
    excluding: int | None = None,
) -> Run:
    """The cell's overrides, the seeds, the set to avoid, its teacher and its own paths, validated as one."""
    directory = study_dir / RUNS_DIR / cell.name / replicate(seed, data_seed)
    overrides = [
        *cell.overrides,
        f"train.seed={seed}",
        *([f"train.subset_seed={data_seed}"] if data_seed is not None else []),
        *([f"train.subset_excludes={excluding}"] if excluding is not None else []),
    ]
    if cell.gap_role:
        overrides += [f"teacher.arch={teacher_archs[cell.gap_role]}", "teacher.source=train"]
    where = [
        f"paths.student={_quoted(directory / 'student')}",
        f"paths.checkpoints={_quoted(directory / 'checkpoints')}",
        f"paths.teacher={_quoted(teacher_dir(base, study_dir, cell.gap_role or 'main'))}",
        "tracking.enabled=false",
        f"runtime.num_threads={threads}",
    ]
    params = params_from_dict(apply_overrides(base.to_dict(), overrides + where), origin=f"study cell {cell.name}")
    return Run(cell, seed, params, tuple(overrides), directory, data_seed)


def teacher_params(base: Params, study_dir: Path, role: str, arch: str, threads: int) -> Params:
    raw = base.to_dict()
    raw["tracking"]["enabled"] = False
    raw["runtime"]["num_threads"] = threads
    if role != "main":
        directory = study_dir / TEACHERS_DIR / role
        raw["teacher"].update(arch=arch, source="train")
        raw["paths"].update(teacher=str(directory), checkpoints=str(directory / "checkpoints"))
    return params_from_dict(raw, origin=f"study teacher {role}")


def read_result(run: Run) -> dict[str, Any] | None:
    """The run's result when it finished with the same training params; None when it must (re)run."""
    path = run.directory / RESULT_FILE
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("study: %s is not valid JSON; rerunning %s", path, run.id)
        return None
    if result.get("fingerprint") != training_fingerprint(run.params):
        log.warning("study: %s was computed with other params; rerunning %s", path, run.id)
        return None
    if result.get("measured") != measured(run.params):
        log.warning("study: %s was measured with other validate or export settings; measuring %s again", path, run.id)
        return None
    return result


def run_task(run: Run) -> RunTask:
    """What a worker needs for one run."""
    return RunTask(
        run.id,
        run.cell.name,
        run.seed,
        run.data_seed,
        run.overrides,
        training_fingerprint(run.params),
        run.teacher_role,
        run.directory,
        run.params.to_dict(),
    )


def execute_run(task: RunTask) -> dict[str, Any]:
    """Worker side of one run: distil (resuming), measure val and test top-1 and the corruptions, write the result;
    a run whose loss stops being finite is kept as diverged (:mod:`kdpipe.study.diverged`)."""
    params = params_from_dict(task.params, origin=f"study run {task.id}")
    own = {"id": task.id, "cell": task.cell, "seed": task.seed, "overrides": list(task.overrides)}
    own |= {"fingerprint": task.fingerprint, "data_seed": task.data_seed, "method": params.method.name}
    own["measured"] = measured(params)
    start = time.perf_counter()
    try:
        history = steps.distill(params, resume=True)["history"]
    except NonFiniteLossError as exc:
        kept = diverged.result(own, str(exc), time.perf_counter() - start, machine())
        files.write_json(task.directory / RESULT_FILE, kept)
        return kept
    wall = time.perf_counter() - start
    data = load_prepared(params.paths.prepared, progress_mode=params.runtime.progress)
    runtime = make_runtime(params.runtime)
    student, _ = load_model(Path(params.paths.student) / MODEL_FILE)
    train_seconds = sum(h["epoch_seconds"] for h in history)
    split = len(data.split("train")[1])
    images = sum(h["images_per_s"] * h["epoch_seconds"] for h in history)
    result = {
        **own,
        "student_arch": params.student.arch,
        "teacher_arch": params.teacher.arch if params.method.name != "scratch" else None,
        "teacher_role": task.teacher_role,
        "data_sha256": data.sha256,
        "transfer_images": split if params.train.subset is None else min(split, params.train.subset),
        **top1_and_test_hits(student, data, runtime),
        "val_top1": top1(student, data, "val", runtime),
        **corrupted_top1(student, data, params.validate_, runtime),
        **int8_top1(student, data, params, Path(params.paths.student)),
        "epochs": len(history),
        "train_seconds": train_seconds,
        "images_per_s": images / train_seconds if train_seconds else 0.0,
        "wall_seconds": wall,
        "device": torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else "cpu",
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "history": history,
        "params": params.to_dict(),
    }
    files.write_json(task.directory / RESULT_FILE, result)
    return result


def stored_teacher(directory: Path) -> Path | None:
    """The teacher file (or MLflow folder) stored at ``directory`` (:mod:`kdpipe.teacher.stored`); None: none is."""
    descriptor = stored.read(directory)
    path = directory / (descriptor.payload if descriptor else MODEL_FILE)
    return path if path.exists() else None


def execute_teacher(task: TeacherTask) -> dict[str, Any]:
    """Worker side of one teacher: train or resolve it once (or load it), measure it, record it in the study."""
    params = params_from_dict(task.params, origin=f"study teacher {task.role}")
    directory = Path(params.paths.teacher)
    data = load_prepared(params.paths.prepared, progress_mode=params.runtime.progress)
    try:
        model = teacher.load(params, data) if stored_teacher(directory) else None
    except TeacherMismatchError as exc:  # another teacher than the params name: resolve theirs, as `kdpipe run` does
        log.info("study: %s", exc)
        model = None
    if model is None:
        steps.evaluate_teacher(params)
        model = teacher.load(params, data)
    path = stored_teacher(directory)
    assert path is not None  # teacher.load found it
    runtime = make_runtime(params.runtime)
    info = {
        "role": task.role,
        "arch": teacher.lineage(params)[tags.TEACHER_ARCH],
        "parameters": count_parameters(model),
        "test_top1": top1(model, data, "test", runtime),
        "val_top1": top1(model, data, "val", runtime),
        **corrupted_top1(model, data, params.validate_, runtime),
        "measured": measured(params),
        "path": str(path),
        "model_sha256": stored.payload_sha256(path),
        "data_sha256": data.sha256,
    }
    files.write_json(task.record, info)
    return info


def _views(run: Run) -> tuple[Any, ...]:
    """What, besides the teacher, decides the outputs a run replays (:func:`kdpipe.identity.replayed_views`)."""
    return run.teacher_role, *identity.replayed_views(run.params.data, run.params.train).values()


def fill_tasks(runs: list[Run], threads: int) -> list[FillTask]:
    """One cache fill per teacher and set of views that ``runs`` replay, to run ahead of them, one after another on
    ``threads`` threads (a fill holds the cache directory): runs of one seed that start together would otherwise
    each record the same outputs live."""
    tasks: dict[tuple[Any, ...], FillTask] = {}
    for run in runs:
        if run.needs_teacher and teacher_cache.mode(run.params) != "off":
            raw = run.params.to_dict()
            raw["runtime"]["num_threads"] = threads
            tasks.setdefault(_views(run), FillTask(f"teacher outputs for {run.id}", raw))
    return list(tasks.values())


def execute_fill(task: FillTask) -> dict[str, Any]:
    """The teacher's outputs for one run's views, recorded ahead of the run (one rank: a study run is one process)."""
    return steps.fill_teacher_cache(params_from_dict(task.params, origin=f"study {task.id}"), world_size=1)


def ensure_prepared(base: Params) -> None:
    if not (Path(base.paths.prepared) / MANIFEST_FILE).exists():
        log.info("study: no prepared data at %s; preparing it", base.paths.prepared)
        raw = base.to_dict()
        raw["tracking"]["enabled"] = False
        steps.prepare_data(params_from_dict(raw, origin="study prepare"))
