"""The study's tasks as a Kubeflow pod runs them: the plan and the results arrive as JSON, each task's work
goes under the data-cache PVC keyed by the Kubeflow run (so a retried pod resumes), and the work itself
is :mod:`kdpipe.study.fanout`'s, as ``kdpipe study`` does it on one machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.kubeflow import launch
from kdpipe.study import fanout
from kdpipe.study.plan import Plan


def _work(cache_dir: str, run_id: str, *parts: str) -> Path:
    return Path(launch.scratch_dir(cache_dir, "study", run_id, *parts))


def teacher(base: Params, plan: dict[str, Any], role: str, cache_dir: str, run_id: str) -> str:
    """Load or train ``role``'s teacher into ``paths.teacher`` and measure it; its record as JSON."""
    work = _work(cache_dir, run_id, "teachers", role)
    return json.dumps(fanout.teacher(base, Plan.from_dict(plan), role, work))


def teacher_outputs(
    base: Params, plan: dict[str, Any], role: str, cache_dir: str, run_id: str, artifact: str
) -> dict[str, Any]:
    """Record ``role``'s teacher outputs for every set of views its runs replay; the artifact's metadata.

    On the PVC the outputs outlive the run, and the artifact at ``artifact`` holds a note of where they are."""
    work = _work(cache_dir, run_id, "teacher-outputs", role)
    filled = fanout.teacher_outputs(base, Plan.from_dict(plan), role, work)
    launch.note_location(artifact, base.paths.teacher_cache)
    return filled


def one_run(base: Params, plan: dict[str, Any], item: dict[str, Any], cache_dir: str, run_id: str) -> dict[str, Any]:
    """Train and measure the run ``item`` names (cell, seed, data seed) into ``paths.student``; its result."""
    return fanout.one_run(base, Plan.from_dict(plan), item, _work(cache_dir, run_id, "runs"))


def report(
    base: Params,
    plan: dict[str, Any],
    run_id: str,
    teachers: list[str],
    runs: list[str],
    *,
    study_dir: str,
    report_copy: str,
    command: str,
) -> dict[str, Any]:
    """Publish the study from every teacher's record and every run's result (JSON; "" for a role the plan has
    no teacher for) into ``study_dir``, the report also to ``report_copy``; the study artifact's metadata."""
    published = fanout.publish(
        base,
        Plan.from_dict(plan),
        fanout.study_id(run_id),
        [json.loads(r) for r in runs],
        [json.loads(t) for t in teachers if t],
        Path(study_dir),
        command,
    )
    shutil.copyfile(published["files"]["report"], report_copy)
    return {"study_id": published["study_id"], **published.get("mlflow", {})}
