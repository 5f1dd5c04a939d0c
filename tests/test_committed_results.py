"""The README's confirmation table, the results page's verdicts and the defaults params.yaml gives, recomputed from
the committed per-run results of the study that made them.

Every figure a reader is shown must follow from files in the repository: ``docs/results/data/`` holds each cited
study phase's ``results.json`` (every run's settings, scores, per-image test hits, and each diverged run's error)
beside ``results.csv``, and the tuning's ``tuning.json``. The tuning's choices are recomputed here from the runs'
val top-1 on their own, not with the code that made them; the verdicts with the same bootstrap (fixed seed) and
Holm steps that wrote the report.
"""

from __future__ import annotations

import functools
import json
import statistics
from pathlib import Path

import pytest

from kdpipe.config import load_params
from kdpipe.study.confirmed import by_cell, families, table
from kdpipe.study.phases import check_tuned

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "docs" / "results" / "data"
TUNE, CONFIRM, FULL = (DATA / f"4717d9b428c3-{phase}" for phase in ("tune", "confirm", "full"))


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


@functools.cache
def _found(phase: Path) -> list:
    """The corrected verdicts, computed once per phase (the bootstrap takes seconds)."""
    found = families(by_cell(_runs(phase)))
    assert not isinstance(found, str), found
    return found


def test_the_confirmation_trains_every_cell_on_the_same_eight_independent_pairs() -> None:
    cells = by_cell(_runs(CONFIRM))
    assert len(cells) == 11  # 7 tuned baselines, srd, 3 ablations
    for runs in cells.values():
        assert sorted((r["data_seed"], r["seed"]) for r in runs) == [(d, d + 2) for d in range(1, 9)]


def test_the_readmes_confirmation_table_is_recomputed_from_the_committed_runs() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    rows = table(_found(CONFIRM))
    assert len(rows) == 2 + 10
    assert [row for row in rows if row not in readme] == []


def test_each_verdicts_mean_is_srds_test_top1_minus_the_others_averaged_over_the_shared_pairs() -> None:
    cells = by_cell(_runs(CONFIRM))
    srd = {(r["data_seed"], r["seed"]): r["test_top1"] for r in cells["srd"]}
    for family in _found(CONFIRM):
        for v in family.verdicts:
            other = {(r["data_seed"], r["seed"]): r["test_top1"] for r in cells[v.comparison.b]}
            by_hand = statistics.fmean(srd[pair] - other[pair] for pair in srd)
            # test_top1 is stored in float32's precision, the verdict's mean counts the per-image hits
            assert v.comparison.mean == pytest.approx(by_hand, abs=1e-6), v.comparison.b


def test_the_results_page_leads_with_that_table_and_states_each_corrected_verdict() -> None:
    page = (REPO / "docs" / "results" / "index.md").read_text()
    found = _found(CONFIRM)
    assert page.index(table(found)[0]) < page.index("## How the study runs")
    wanted = [*table(found), *(f"- {v.line()}" for family in found for v in family.verdicts)]
    assert [line for line in wanted if line not in page.splitlines()] == []


def test_the_full_data_phase_pits_srd_against_the_baseline_best_on_val_at_five_seeds_on_the_whole_split() -> None:
    choices = json.loads((TUNE / "tuning.json").read_text())["choices"]
    best = max((m for m in choices if m != "srd"), key=lambda m: choices[m]["val_top1"])
    cells = by_cell(_runs(FULL))
    assert sorted(cells) == sorted(["srd", best])
    for runs in cells.values():
        assert sorted(r["seed"] for r in runs) == [3, 4, 5, 6, 7]
        assert {r["params"]["train"]["subset"] for r in runs} == {None}  # the whole train split


def test_the_results_page_states_the_full_data_phases_corrected_verdict() -> None:
    page = (REPO / "docs" / "results" / "index.md").read_text().splitlines()
    lines = [f"- {v.line()}" for family in _found(FULL) for v in family.verdicts]
    assert len(lines) == 1
    assert [line for line in lines if line not in page] == []


@pytest.mark.parametrize("phase", [TUNE, CONFIRM, FULL], ids=["tune", "confirm", "full"])
def test_the_committed_csv_lists_the_same_runs_as_the_json(phase: Path) -> None:
    rows = (phase / "results.csv").read_text().splitlines()
    assert len(rows) == len(_runs(phase)) + 1
