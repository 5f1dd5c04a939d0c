"""The defaults params.yaml gives, recomputed from the committed per-run results of the study that chose them.

Every figure a reader is shown must follow from files in the repository: ``docs/results/data/`` holds each cited
study phase's ``results.json`` (every run's settings, scores, per-image test hits, and each diverged run's error)
beside ``results.csv``, and the tuning's ``tuning.json``. The tuning's choices are recomputed here from the runs'
val top-1 on their own, not with the code that made them.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from kdpipe.config import load_params
from kdpipe.study.confirmed import by_cell
from kdpipe.study.phases import check_tuned

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "docs" / "results" / "data"
TUNE = DATA / "4717d9b428c3-tune"


def _runs(phase: Path) -> list[dict]:
    return json.loads((phase / "results.json").read_text())["runs"]


def test_each_tuned_choice_is_its_methods_best_mean_val_top1_among_the_committed_runs_that_did_not_diverge() -> None:
    runs = _runs(TUNE)
    choices = json.loads((TUNE / "tuning.json").read_text())["choices"]
    assert len(choices) == 8
    for method, choice in choices.items():
        cells = by_cell(r for r in runs if r["method"] == method)
        out = {cell for cell, got in cells.items() if any("diverged" in r for r in got)}
        assert sorted(out) == sorted(choice["diverged"]), method
        val = {cell: statistics.fmean(r["val_top1"] for r in got) for cell, got in cells.items() if cell not in out}
        assert choice["cell"] == max(val, key=val.__getitem__), method
        assert sorted(r["seed"] for r in cells[choice["cell"]]) == [0, 1], method


def test_params_yaml_holds_the_settings_the_committed_tuning_chose() -> None:
    assert (TUNE / "tuning.json").exists()  # check_tuned passes a study without one
    check_tuned(load_params(REPO / "params.yaml"), TUNE)


def test_the_committed_csv_lists_the_same_runs_as_the_json() -> None:
    rows = (TUNE / "results.csv").read_text().splitlines()
    assert len(rows) == len(_runs(TUNE)) + 1
