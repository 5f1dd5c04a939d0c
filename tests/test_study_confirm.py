"""`kdpipe study --confirm`: fresh transfer sets x seeds, paired intervals that claim no more than they show."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from scipy import stats

from conftest import TINY, write_params
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.study.cells import select_cells
from kdpipe.study.paired import PairedDifference, paired_difference
from kdpipe.study.phases import CONFIRM_CELLS
from kdpipe.study.summary import Summary
from kdpipe.tracking.tags import STEP, STUDY_ID, STUDY_PHASE


def test_confirm_runs_every_cell_on_fresh_transfer_sets_and_reports_paired_intervals(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    params = make_params(**TINY, validate__corruptions="none")
    params_file = write_params(params, tmp_path / "params.yaml")
    study = tmp_path / "confirm"

    assert (
        main(
            [
                "study",
                "-c",
                str(params_file),
                "--dir",
                str(study),
                "--confirm",
                "--no-gap",
                "--seeds",
                "0",
                "1",
                "--jobs",
                "2",
            ]
        )
        == 0
    )

    results = [json.loads(p.read_text()) for p in sorted(study.glob("runs/*/*/result.json"))]
    assert sorted({(r["cell"], r["data_seed"], r["seed"]) for r in results}) == sorted(
        (c, d, s) for c in CONFIRM_CELLS for d in (1, 2) for s in (0, 1)
    )
    assert all(f"train.subset_seed={r['data_seed']}" in r["overrides"] for r in results)
    # Each transfer set is its own sample: the teacher's outputs were recorded once per (data seed, seed).
    keys = [json.loads(p.read_text()) for p in Path(params.paths.teacher_cache).glob("*/key.json")]
    assert sorted((k["sample_seed"], k["view_seed"]) for k in keys) == [(1, 0), (1, 1), (2, 0), (2, 1)]

    top1 = {(r["cell"], r["data_seed"], r["seed"]): r["test_top1"] for r in results}
    report = (study / "report.md").read_text()
    assert "on each transfer set drawn by data seed 1, 2" in report
    for baseline in ("kd", "fitnet", "scratch"):
        pairs = [(d, s) for d in (1, 2) for s in (0, 1)]
        diffs = [top1[("srd", *p)] - top1[(baseline, *p)] for p in pairs]
        low, high = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
        line = next(x for x in report.splitlines() if x.startswith(f"- srd - {baseline}"))  # the paired section's
        assert (
            f"{100 * statistics.fmean(diffs):+.2f} points, 95 % CI [{100 * low:+.2f}, {100 * high:+.2f}], n=4" in line
        )
        assert ("no difference shown" in line) == (low <= 0 <= high)
    val = {c: statistics.fmean(r["val_top1"] for r in results if r["cell"] == c) for c in ("kd", "fitnet", "scratch")}
    assert f"- srd - {max(val, key=val.get)} (the best baseline on val): " in report
    assert report.count("(the best baseline on val)") == 1

    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    study_id = json.loads((study / "study.json").read_text())["study_id"]
    runs = client.search_runs([experiment], filter_string=f"tags.`{STUDY_ID}` = '{study_id}'", max_results=500)
    cells = [r for r in runs if r.data.tags.get(STEP) == "study_cell"]
    assert len(cells) == len(CONFIRM_CELLS) and {r.data.tags[STUDY_PHASE] for r in cells} == {"confirm"}
    names = {r.info.run_name for r in runs if r.data.tags.get(STEP) == "study_run"}
    assert "srd-data2-seed1" in names and len(names) == len(results)


def _summary(cell: str, values: list[float]) -> Summary:
    (c,) = select_cells([cell])
    runs = [{"seed": s, "data_seed": 1, "test_top1": v} for s, v in enumerate(values)]
    return Summary(c, None, runs)


def test_a_paired_difference_is_claimed_only_when_its_interval_excludes_zero() -> None:
    up = paired_difference(_summary("srd", [0.90, 0.91, 0.92]), _summary("kd", [0.88, 0.885, 0.90]))
    mixed = paired_difference(_summary("srd", [0.90, 0.88, 0.91]), _summary("kd", [0.89, 0.89, 0.89]))
    assert isinstance(up, PairedDifference) and isinstance(mixed, PairedDifference)
    d = [0.02, 0.025, 0.02]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(d) / math.sqrt(3)
    assert (up.low, up.high) == pytest.approx((statistics.fmean(d) - half, statistics.fmean(d) + half))
    assert up.verdict().startswith("srd above kd: +2.17 points")
    assert mixed.low < 0 < mixed.high and mixed.verdict().startswith("no difference shown between srd and kd")
    assert paired_difference(_summary("srd", [0.9]), _summary("kd", [0.8])) is None
