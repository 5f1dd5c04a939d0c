"""`kdpipe study --confirm`: independent pairs of fresh transfer sets and seeds, corrected verdicts that claim no more
than they show; and the t-interval the other phases still use."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest
from scipy import stats

from conftest import PARAMS_FILE, TINY, write_params
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.study.cells import ABLATIONS, BASELINES, select_cells
from kdpipe.study.corrected import compare, holm, unpack
from kdpipe.study.paired import PairedDifference, paired_difference
from kdpipe.study.phases import CONFIRM_CELLS
from kdpipe.study.summary import Summary
from kdpipe.study.threads import machine
from kdpipe.tracking.tags import STEP, STUDY_ID, STUDY_PHASE


def test_confirm_runs_every_cell_on_independent_pairs_without_tuning_images_and_reports_corrected_verdicts(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    """Every tuned baseline, srd and its ablations on pairs (data seed 1, seed 0) and (2, 1), each transfer set
    drawn from what the tuning set (data.seed 0's draw) leaves out. The report's corrected verdicts are recomputed
    here from the runs' own result files: the same bootstrap and Holm steps, the same lines."""
    params = make_params(**TINY, train__subset=120, validate__corruptions="none")
    params_file = write_params(params, tmp_path / "params.yaml")
    study = tmp_path / "confirm"
    args = ["study", "-c", str(params_file), "--dir", str(study), "--confirm", "--seeds", "0", "1"]

    assert main([*args, "--data-seeds", "1", "2", "--jobs", "2"]) == 0

    results = [json.loads(p.read_text()) for p in sorted(study.glob("runs/*/*/result.json"))]
    assert sorted((r["cell"], r["data_seed"], r["seed"]) for r in results) == sorted(
        (c, d, s) for c in CONFIRM_CELLS for d, s in ((1, 0), (2, 1))
    )
    assert all(f"train.subset_seed={r['data_seed']}" in r["overrides"] for r in results)
    assert all("train.subset_excludes=0" in r["overrides"] for r in results)
    keys = [json.loads(p.read_text()) for p in Path(params.paths.teacher_cache).glob("*/key.json")]
    assert sorted((k["sample_seed"], k["view_seed"], k["sample_excluding"]) for k in keys) == [(1, 0, 0), (2, 1, 0)]

    report = (study / "report.md").read_text()
    assert "2 independent pairs (data seed, seed) [(1, 0), (2, 1)], none holding an image of data seed 0's draw" in (
        report
    )
    by_cell: dict[str, list[dict]] = {}
    for r in results:
        by_cell.setdefault(r["cell"], []).append(r)
    srd = sorted(by_cell["srd"], key=lambda r: r["data_seed"])
    for family in (BASELINES, ABLATIONS):
        comparisons = []
        for other in family:
            theirs = sorted(by_cell[other], key=lambda r: r["data_seed"])
            hits = [np.stack([unpack(r["test_hits"], r["test_images"]) for r in runs]) for runs in (srd, theirs)]
            assert hits[0].shape == (2, params.data.test_subset)
            assert hits[0].mean(axis=1) == pytest.approx([r["test_top1"] for r in srd])
            comparisons.append(compare("srd", other, *hits))
        for verdict in holm(comparisons):
            assert f"- {verdict.line()}" in report.splitlines()
    assert "95 % CI" not in report  # no uncorrected t-interval beside the corrected verdicts
    (compute,) = [x for x in report.splitlines() if x.startswith("- compute: ")]
    hours = sum(r["wall_seconds"] for r in results) / 3600
    assert compute.startswith(f"- compute: {len(results)} runs, {hours:.2f} h summed over runs")
    assert compute.endswith(f"; {machine()}") and "cores" in machine()

    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    study_id = json.loads((study / "study.json").read_text())["study_id"]
    runs = client.search_runs([experiment], filter_string=f"tags.`{STUDY_ID}` = '{study_id}'", max_results=500)
    cells = [r for r in runs if r.data.tags.get(STEP) == "study_cell"]
    assert len(cells) == len(CONFIRM_CELLS) and {r.data.tags[STUDY_PHASE] for r in cells} == {"confirm"}
    names = {r.info.run_name for r in runs if r.data.tags.get(STEP) == "study_run"}
    assert "srd-data2-seed1" in names and len(names) == len(results)


def test_confirm_refuses_seeds_and_data_seeds_that_do_not_pair_one_to_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["study", "-c", PARAMS_FILE, "--dir", str(tmp_path / "c"), "--confirm", "--seeds", "3", "4", "5"]
    assert main([*args, "--data-seeds", "1", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdpipe: error: --seeds and --data-seeds: this phase pairs them one to one")
    assert err.endswith("got 3 seeds and 2 data seeds") and not (tmp_path / "c").exists()
    assert main([*args[:-1], "--data-seeds", "1", "2", "-p", "train.subset=null"]) == 2
    assert "needs train.subset (their size)" in capsys.readouterr().err


def test_full_trains_srd_and_the_best_tuned_baseline_on_the_whole_split_with_a_corrected_verdict(
    make_params: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tuning study it joins is written here as its two files (study.json, tuning.json: kd chose with val 0.90,
    fitnet with 0.80), the choices params.yaml holds, so the phase's own logic is what is tested: kd is the best
    baseline, ``train.subset`` 120 gives way to the whole split, and srd - kd gets the corrected verdict."""
    params = make_params(**TINY, train__subset=120, validate__corruptions="none")
    params_file = write_params(params, tmp_path / "params.yaml")
    args = ["study", "-c", str(params_file), "--dir", str(tmp_path / "full"), "--full", "--seeds", "0", "1"]
    assert main(args) == 2
    assert "--full compares srd with the best tuned baseline" in capsys.readouterr().err

    tune = tmp_path / "tune"
    tune.mkdir()
    (tune / "study.json").write_text(json.dumps({"study_id": "0123456789ab"}))
    choices = {
        "kd": {"overrides": [f"method.kd.temperature={params.method.kd.temperature}"], "val_top1": 0.90},
        "fitnet": {"overrides": [f"method.fitnet.feat_weight={params.method.fitnet.feat_weight}"], "val_top1": 0.80},
        "srd": {"overrides": [f"method.srd.alpha={params.method.srd.alpha}"], "val_top1": 0.95},
    }
    (tune / "tuning.json").write_text(json.dumps({"selected_on": "val_top1", "choices": choices}))

    assert main([*args, "--join", str(tune), "--jobs", "2"]) == 0

    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "full").glob("runs/*/*/result.json"))]
    assert sorted((r["cell"], r["seed"]) for r in results) == [("kd", 0), ("kd", 1), ("srd", 0), ("srd", 1)]
    train_images = len(load_prepared(params.paths.prepared).split("train")[1])
    assert {r["transfer_images"] for r in results} == {train_images} and train_images > 120
    assert all(r["params"]["train"]["subset"] is None for r in results)
    hits = [
        np.stack(
            [
                unpack(r["test_hits"], r["test_images"])
                for r in sorted(results, key=lambda r: r["seed"])
                if r["cell"] == c
            ]
        )
        for c in ("srd", "kd")
    ]
    (verdict,) = holm([compare("srd", "kd", *hits)])
    report = (tmp_path / "full" / "report.md").read_text()
    assert f"- {verdict.line()}" in report.splitlines() and "srd against each tuned baseline (1 comparison)" in report
    assert "over the whole train split" in report


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
