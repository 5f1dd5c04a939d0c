"""Logging a study to MLflow: one parent run, one child per cell, one grandchild per seed.

It reads only the runs' result files, so a study trained elsewhere with tracking off is logged by
rerunning the same command here. Every run it creates carries a key tag and is marked complete
last; a rerun finds the complete ones by their key and logs only what is missing (an incomplete
cell, left by a crash while logging, is deleted and logged again), so logging twice adds no run. A
cell whose runs were rerun since it was logged (other params, other measurements) is replaced, so
MLflow never keeps the figures of results the directory no longer holds. The
report files are uploaded every time, so the parent holds the report the directory holds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.files import fingerprint
from kdpipe.study import tuning
from kdpipe.study.grids import knobs
from kdpipe.study.plan import MAIN_PHASE
from kdpipe.study.runner import replicate
from kdpipe.study.summary import Summary
from kdpipe.tracking import tags
from kdpipe.tracking.runs import flatten
from kdpipe.tracking.server import check_tracking

log = logging.getLogger("kdpipe")

PARENT_TAG = "mlflow.parentRunId"
BATCH = 100


class _Logger:
    def __init__(self, params: Params, study_id: str) -> None:
        from mlflow import MlflowClient

        check_tracking(params)
        self.client = MlflowClient(tracking_uri=params.tracking.uri)
        self.experiment_id = self.client.get_experiment_by_name(params.tracking.experiment).experiment_id
        self.study_id = study_id
        self.runs: dict[str, Any] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{tags.STUDY_ID}` = '{study_id}'", page_token=token
            )
            self.runs |= {r.data.tags[tags.STUDY_KEY]: r for r in page if tags.STUDY_KEY in r.data.tags}
            token = page.token
            if not token:
                break

    def complete(self, key: str) -> bool:
        run = self.runs.get(key)
        return run is not None and run.data.tags.get(tags.STUDY_COMPLETE) == "true"

    def replace(self, key: str, name: str, parent: str | None, run_tags: dict[str, Any]) -> str:
        """A new run under ``key``; one already there (left incomplete, or stale) is deleted first."""
        if key in self.runs:
            self.client.delete_run(self.runs.pop(key).info.run_id)
        return self.create(key, name, parent, run_tags)

    def create(self, key: str, name: str, parent: str | None, run_tags: dict[str, Any]) -> str:
        all_tags = {tags.STUDY_ID: self.study_id, tags.STUDY_KEY: key, **{k: str(v) for k, v in run_tags.items()}}
        if parent:
            all_tags[PARENT_TAG] = parent
        return self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id

    def log(
        self,
        run_id: str,
        metrics: dict[str, float | None],
        params: dict[str, Any] | None = None,
        history: list[dict[str, float]] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
        for record in history or []:
            step = int(record["epoch"])
            items += [Metric(k, float(v), now, step) for k, v in record.items() if k != "epoch"]
        plist = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        for i in range(0, max(len(items), len(plist)), BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + BATCH], params=plist[i : i + BATCH])

    def finish(self, run_id: str) -> None:
        self.client.set_tag(run_id, tags.STUDY_COMPLETE, "true")
        self.client.set_terminated(run_id, "FINISHED")


def _cell_metrics(s: Summary, scratch: Summary | None) -> dict[str, float | None]:
    return {**s.metrics(scratch), "seeds": len(s.runs)}


def _namespace(phase: str) -> str | None:
    """Where a phase's files and metrics sit on the shared parent: the main study's at the root, the others' under
    the phase's name."""
    return None if phase == MAIN_PHASE else phase


def _run_params(result: dict[str, Any]) -> dict[str, Any]:
    tree = {k: v for k, v in result["params"].items() if k not in ("paths", "tracking")}
    return {"overrides": " ".join(result["overrides"]), **flatten(tree)}


def log_study(
    params: Params, study_id: str, summaries: list[Summary], files: dict[str, Path], phase: str = MAIN_PHASE
) -> dict[str, Any]:
    """Log what is not logged yet; return the parent run id and how many cells were logged now.

    The phases of one study (tune, then confirm, gap and budget, which join it) share the parent run: each
    logs its cells under it, its summary metrics on it prefixed with the phase (confirm's and gap's kd cells are
    different runs: ``confirm.kd.test_top1_mean``, ``gap.kd.test_top1_mean``; the main study's are unprefixed) and
    its report files in a folder named after the phase."""
    mlf = _Logger(params, study_id)
    fresh_parent = not mlf.complete(study_id)
    found = mlf.runs.get(study_id)
    parent = found.info.run_id if found else mlf.create(study_id, f"study-{study_id}", None, {tags.STEP: "study"})
    scratch = next((s for s in summaries if s.cell.name == "scratch"), None)
    logged = skipped = 0
    for s in summaries:
        labels = [replicate(r["seed"], r.get("data_seed")) for r in s.runs]
        seeds = ",".join(
            str(r["seed"]) if r.get("data_seed") is None else label for r, label in zip(s.runs, labels, strict=True)
        )
        key = f"{study_id}/{s.cell.name}/seeds={seeds}"
        results = fingerprint([(r["fingerprint"], r.get("finished_at")) for r in s.runs])[:16]
        if mlf.complete(key) and mlf.runs[key].data.tags.get(tags.STUDY_RESULTS) == results:
            skipped += 1
            continue
        cell_tags = {
            tags.STEP: "study_cell",
            tags.STUDY_CELL: s.cell.name,
            tags.METHOD: s.cell.method,
            tags.STUDY_SEEDS: seeds,
            tags.STUDY_PHASE: phase,
            tags.STUDY_RESULTS: results,
        }
        child = mlf.replace(key, s.cell.name, parent, cell_tags)
        mlf.log(child, _cell_metrics(s, scratch), {"cell": s.cell.name, "what": s.cell.what, **_run_params(s.runs[0])})
        for r, label in zip(s.runs, labels, strict=True):
            run_tags = {
                **cell_tags,
                tags.STEP: "study_run",
                tags.DEVICE: r["device"],
                tags.DATA_SHA256: r["data_sha256"],
            }
            grandchild = mlf.replace(f"{key}/{label}", f"{s.cell.name}-{label}", child, run_tags)
            final = {k: r[k] for k in ("test_top1", "val_top1", "train_seconds", "images_per_s", "wall_seconds")}
            seeds_of = {"seed": r["seed"], **({} if r.get("data_seed") is None else {"data_seed": r["data_seed"]})}
            mlf.log(grandchild, final, seeds_of, r["history"])
            mlf.finish(grandchild)
        mlf.finish(child)
        logged += 1
    if fresh_parent or logged:
        folder = _namespace(phase)
        prefix = f"{folder}." if folder else ""
        metrics = {f"{prefix}{s.cell.name}.{k}": v for s in summaries for k, v in _cell_metrics(s, scratch).items()}
        chosen = {f"tuned.{c.method}": " ".join(knobs(c.chosen.cell)) for c in tuning.choose(summaries)}
        mlf.log(parent, metrics, chosen)
        mlf.finish(parent)
    for path in files.values():  # the report of this run of the command, even when every cell was logged before
        mlf.client.log_artifact(parent, str(path), artifact_path=_namespace(phase))
    log.info("study: MLflow parent run %s (%d cell(s) logged now, %d already there)", parent, logged, skipped)
    return {"parent_run_id": parent, "logged_cells": logged, "already_logged_cells": skipped}
