"""The study's work as tasks: a teacher to train or measure, its outputs to record, a run; and the pool that runs them.

A task is what a worker needs, as plain data: workers are spawned, not forked (so CUDA works in each), and a
task crosses into one pickled, its params as the dict a worker validates again. With ``jobs > 1`` tasks go to
worker processes: small models are launch-bound on a GPU, so several processes sharing it multiply the
throughput. The Kubeflow study runs the same tasks, one per pod (:mod:`kdpipe.study.fanout`).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from kdpipe.deploy import onnx as export


@dataclass(frozen=True)
class TeacherTask:
    """Train a role's teacher once (or load it), measure it, and record it at ``record``."""

    id: str
    role: str
    record: Path
    params: dict[str, Any]


@dataclass(frozen=True)
class FillTask:
    """Record a teacher's outputs for one set of views, ahead of the runs that replay them."""

    id: str
    params: dict[str, Any]


@dataclass(frozen=True)
class RunTask:
    """One run: a cell under a seed (on a data seed's transfer set), trained and measured into ``directory``."""

    id: str
    cell: str
    seed: int
    data_seed: int | None
    overrides: tuple[str, ...]
    fingerprint: str
    teacher_role: str
    directory: Path
    params: dict[str, Any]


T = TypeVar("T", TeacherTask, FillTask, RunTask)


def _init_worker(threads: int, level: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(asctime)s [%(processName)s] %(message)s", datefmt="%H:%M:%S")
    for chatty in export.EXPORTER_LOGGERS:  # as the CLI's own process does
        logging.getLogger(chatty).setLevel(logging.WARNING)


def execute(
    fn: Callable[[T], dict[str, Any]],
    tasks: Sequence[T],
    jobs: int,
    threads: int,
    done: Callable[[T, dict[str, Any]], None],
) -> dict[str, str]:
    """Run ``fn`` on every task, in this process or in ``jobs`` workers of ``threads`` threads; ``done`` receives
    each task's result as it comes. Returns the failures by task id.

    One failing task does not stop the others: its error is returned and it reruns next time.
    """
    failures: dict[str, str] = {}
    if jobs == 1:
        for task in tasks:
            try:
                done(task, fn(task))
            except Exception as exc:  # any error of one run is reported; the others go on
                failures[task.id] = f"{type(exc).__name__}: {exc}"
        return failures
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger("kdpipe").getEffectiveLevel()
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads, level)) as pool:
        futures = {pool.submit(fn, task): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                done(task, future.result())
            except Exception as exc:  # includes a worker that died (BrokenProcessPool)
                failures[task.id] = f"{type(exc).__name__}: {exc}"
    return failures
