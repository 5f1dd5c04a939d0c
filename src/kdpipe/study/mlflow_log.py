"""Logging a study to MLflow: one parent run, one child per cell, one grandchild per seed.

It reads only the runs' result files, so a study trained elsewhere with tracking off is logged by
rerunning the same command here. Every run is opened as every kdpipe run is
(:func:`kdpipe.tracking.runs.open_run`), carries a key tag and is marked complete last; a rerun finds the
complete ones by their key and logs only what is missing (an incomplete cell, left by a crash while
logging, is deleted and logged again; the parent is continued), so logging twice adds no run. A
cell whose runs were rerun since it was logged (other params, other measurements) is replaced, so
MLflow never keeps the figures of results the directory no longer holds. The
report files are uploaded every time, so the parent holds the report the directory holds.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
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
from kdpipe.tracking.runs import PARENT_TAG, Store, flatten, log_params, open_run

log = logging.getLogger("kdpipe")

__all__ = ["PARENT_TAG", "log_study"]  # PARENT_TAG: what ties a cell run to the parent, a seed run to its cell

BATCH = 100


class _Logger:
    def __init__(self, params: Params, study_id: str) -> None:
        self.store = Store.reach(params)
        self.client = self.store.client
        self.study_id = study_id
        self.runs: dict[str, Any] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.store.experiment_id], filter_string=f"tags.`{tags.STUDY_ID}` = '{study_id}'", page_token=token
            )
            self.runs |= {r.data.tags[tags.STUDY_KEY]: r for r in page if tags.STUDY_KEY in r.data.tags}
            token = page.token
            if not token:
                break

    def complete(self, key: str) -> bool:
        run = self.runs.get(key)
        return run is not None and run.data.tags.get(tags.STUDY_COMPLETE) == "true"

    def open(
        self,
        key: str,
        name: str,
        parent: str | None,
        run_tags: dict[str, Any],
        params: dict[str, Any] | None = None,
        *,
        resume: bool = False,
    ) -> AbstractContextManager[str]:
        """The run under ``key`` for the block: one already there is continued with ``resume``, else deleted first
        (left incomplete, or stale) and a new one opened."""
        found = self.runs.get(key)
        if found is not None and not resume:
            self.client.delete_run(self.runs.pop(key).info.run_id)
        return open_run(
            self.store,
            name,
            {tags.STUDY_ID: self.study_id, tags.STUDY_KEY: key, **run_tags},
            parent=parent,
            params=params,
            resume=found.info.run_id if found is not None and resume else None,
            what=f"the study's {name} run",
        )

    def log(self, run_id: str, metrics: dict[str, float | None], history: list[dict[str, float]] | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
        for record in history or []:
            step = int(record["epoch"])
            items += [Metric(k, float(v), now, step) for k, v in record.items() if k != "epoch"]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + BATCH])

    def mark_complete(self, run_id: str) -> None:
        """Last, before the run ends: what a rerun reads as "logged whole"."""
        self.client.set_tag(run_id, tags.STUDY_COMPLETE, "true")


def _cell_metrics(s: Summary, scratch: Summary | None) -> dict[str, float | None]:
    return {**s.metrics(scratch), "seeds": len(s.runs)}


def _namespace(phase: str) -> str | None:
    """Where a phase's files and metrics sit on the shared parent: the main study's at the root, the others' under
    the phase's name."""
    return None if phase == MAIN_PHASE else phase


def _run_params(result: dict[str, Any]) -> dict[str, Any]:
    tree = {k: v for k, v in result["params"].items() if k not in ("paths", "tracking")}
    return {"overrides": " ".join(result["overrides"]), **flatten(tree)}


def _log_cell(mlf: _Logger, parent: str, s: Summary, scratch: Summary | None, phase: str) -> bool:
    """The cell's run and a run per seed under it, unless logged whole already with these results; whether it
    logged them now."""
    labels = [replicate(r["seed"], r.get("data_seed")) for r in s.runs]
    seeds = ",".join(
        str(r["seed"]) if r.get("data_seed") is None else label for r, label in zip(s.runs, labels, strict=True)
    )
    key = f"{mlf.study_id}/{s.cell.name}/seeds={seeds}"
    results = fingerprint([(r["fingerprint"], r.get("finished_at")) for r in s.runs])[:16]
    if mlf.complete(key) and mlf.runs[key].data.tags.get(tags.STUDY_RESULTS) == results:
        return False
    cell_tags = {
        tags.STEP: "study_cell",
        tags.STUDY_CELL: s.cell.name,
        tags.METHOD: s.cell.method,
        tags.STUDY_SEEDS: seeds,
        tags.STUDY_PHASE: phase,
        tags.STUDY_RESULTS: results,
    }
    cell_params = {"cell": s.cell.name, "what": s.cell.what, **_run_params(s.runs[0])}
    with mlf.open(key, s.cell.name, parent, cell_tags, cell_params) as child:
        mlf.log(child, _cell_metrics(s, scratch))
        for r, label in zip(s.runs, labels, strict=True):
            run_tags = {
                **cell_tags,
                tags.STEP: "study_run",
                tags.DEVICE: r["device"],
                tags.DATA_SHA256: r["data_sha256"],
            }
            seeds_of = {"seed": r["seed"], **({} if r.get("data_seed") is None else {"data_seed": r["data_seed"]})}
            with mlf.open(f"{key}/{label}", f"{s.cell.name}-{label}", child, run_tags, seeds_of) as grandchild:
                final = {k: r[k] for k in ("test_top1", "val_top1", "train_seconds", "images_per_s", "wall_seconds")}
                mlf.log(grandchild, final, r["history"])
                mlf.mark_complete(grandchild)
        mlf.mark_complete(child)
    return True


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
    scratch = next((s for s in summaries if s.cell.name == "scratch"), None)
    with mlf.open(study_id, f"study-{study_id}", None, {tags.STEP: "study"}, resume=True) as parent:
        logged = sum(_log_cell(mlf, parent, s, scratch, phase) for s in summaries)
        if fresh_parent or logged:
            folder = _namespace(phase)
            prefix = f"{folder}." if folder else ""
            metrics = {f"{prefix}{s.cell.name}.{k}": v for s in summaries for k, v in _cell_metrics(s, scratch).items()}
            chosen = {f"tuned.{c.method}": " ".join(knobs(c.chosen.cell)) for c in tuning.choose(summaries)}
            mlf.log(parent, metrics)
            if chosen:
                log_params(mlf.client, parent, chosen)
            mlf.mark_complete(parent)
        for path in files.values():  # the report of this run of the command, even when every cell was logged before
            mlf.client.log_artifact(parent, str(path), artifact_path=_namespace(phase))
    skipped = len(summaries) - logged
    log.info("study: MLflow parent run %s (%d cell(s) logged now, %d already there)", parent, logged, skipped)
    return {"parent_run_id": parent, "logged_cells": logged, "already_logged_cells": skipped}
