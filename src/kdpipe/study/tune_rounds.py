"""``kdpipe study --tune`` in rounds, because what it trains next depends on what it has found on val.

1. scratch's grid: the shared optimiser settings (learning rate, weight decay), chosen on val;
2. every other method's grid, each setting trained with scratch's choice;
3. after either, each method whose choice lies at an end of an extending axis trains one step past it
   (:func:`kdpipe.study.grids.edge_cells`), at most ``MAX_EXTENSIONS`` times, so that no choice is final at the
   end of a range it never saw beyond.

Each round is one :func:`run_study` call on the same directory at the same seeds: finished runs are kept by their
fingerprints, so an interrupted tuning continues where it stopped, and the rounds it had already decided come out
the same. Only the last call writes the report and ``tuning.json`` and logs to MLflow, over every cell tried. A
setting with a run whose loss stopped being finite is ruled out and reported (:mod:`kdpipe.study.diverged`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdpipe.config import Params, apply_overrides, params_from_dict
from kdpipe.study import diverged
from kdpipe.study.cells import Cell
from kdpipe.study.grids import GRIDS, MAX_EXTENSIONS, SHARED_METHOD, Grid, edge_cells, knobs
from kdpipe.study.orchestrator import run_study
from kdpipe.study.summary import Summary, summarise
from kdpipe.study.tuning import Choice, choose

log = logging.getLogger("kdpipe")

Train = Callable[[list[Cell], bool], dict[str, Any]]


def _scored(cells: list[Cell], results: list[Any], archs: dict[str, str]) -> tuple[list[Summary], list[Cell]]:
    """What :func:`choose` reads: the cells' scored runs, and the cells ruled out by a diverged run."""
    return summarise(cells, results, archs), diverged.cells(cells, results)


def _extend(grids: list[Grid], tried: dict[str, list[Cell]], train: Train, archs: dict[str, str]) -> list[Choice]:
    """Train the grids' steps past their ends until every choice is inside its ranges or has had its steps."""
    every = [c for g in grids for c in tried[g.method]]
    results = train(every, False)["results"]
    for _ in range(MAX_EXTENSIONS):
        choices = [c for c in choose(*_scored(every, results, archs)) if c.method in tried]
        beyond = {c.method: edge_cells(GRIDS[c.method], tried[c.method], c.chosen.cell) for c in choices}
        beyond = {m: cells for m, cells in beyond.items() if cells}
        if not beyond:
            return choices
        for method, cells in beyond.items():
            log.info(
                "study: tune: %s's choice is at an end of its range; trying %s",
                method,
                ", ".join(c.name for c in cells),
            )
            tried[method] += cells
        every = [c for g in grids for c in tried[g.method]]
        results = train(every, False)["results"]
    return [c for c in choose(*_scored(every, results, archs)) if c.method in tried]


def run_tuning(base: Params, study_dir: Path, *, seeds: list[int], jobs: int, **study: Any) -> dict[str, Any]:
    """Both stages and their extensions, then the report over every cell tried; ``study`` goes to
    :func:`run_study` (plot, command, join). The corruption suite is left out: a choice reads val top-1 alone, and
    the suite would cost a large share of each of some 320 runs."""
    if base.validate_.corruptions != "none":
        log.info("study: tune: validate.corruptions none for the grids (the choice reads val top-1 only)")
        base = params_from_dict(apply_overrides(base.to_dict(), ["validate.corruptions=none"]), origin="study tune")
    archs = {"main": base.teacher.arch}
    tried: dict[str, list[Cell]] = {}

    def train(cells: list[Cell], publish: bool) -> dict[str, Any]:
        names = [c.name for c in cells]
        return run_study(
            base,
            study_dir,
            seeds=seeds,
            cells=names,
            jobs=jobs,
            gap=False,
            phase="tune",
            extra=tuple(cells),
            publish=publish,
            **study,
        )

    shared_grid = GRIDS[SHARED_METHOD]
    tried[SHARED_METHOD] = shared_grid.cells()
    (shared,) = _extend([shared_grid], tried, train, archs)
    settings = tuple(knobs(shared.chosen.cell))
    log.info("study: tune: shared settings chosen on val: %s; every other method trains with them", " ".join(settings))
    others = [g for m, g in GRIDS.items() if m != SHARED_METHOD]
    for grid in others:
        tried[grid.method] = grid.cells(settings)
    _extend(others, tried, train, archs)
    every = [c for g in GRIDS.values() for c in tried[g.method]]
    outcome = train(every, True)
    log.info("study: tune: %d settings tried, %s", len(every), json.dumps({m: len(c) for m, c in tried.items()}))
    return outcome
