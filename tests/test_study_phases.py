"""The study's later phases: `--budget` (the data-budget curve at equal steps, its paired gains), `--gap` (three
teachers), and one MLflow parent for the phases of a study."""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from scipy import stats

from conftest import PARAMS_FILE, TINY, write_params
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.infra.files import write_json
from kdpipe.study import budget
from kdpipe.tracking.tags import STEP, STUDY_ID, STUDY_PHASE


def test_budget_trains_each_method_at_each_size_with_equal_steps_and_logs_into_the_study_it_joins(
    make_params: Callable[..., Params], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = make_params(**TINY, validate__corruptions="none")
    params_file = write_params(params, tmp_path / "params.yaml")
    first = tmp_path / "study-tune"  # the study a later phase joins by default: study-tune beside its directory
    assert (
        main(
            [
                "study",
                "-c",
                str(params_file),
                "--dir",
                str(first),
                "--cells",
                "scratch",
                "kd",
                "--seeds",
                "0",
                "--no-gap",
            ]
        )
        == 0
    )

    study = tmp_path / "study-budget"
    caplog.set_level(logging.INFO, logger="kdpipe")
    assert (
        main(["study", "-c", str(params_file), "--dir", str(study), "--budget", "--seeds", "0", "1", "--jobs", "2"])
        == 0
    )

    results = [json.loads(p.read_text()) for p in sorted(study.glob("runs/*/*/result.json"))]
    assert sorted((r["cell"], r["data_seed"], r["seed"]) for r in results) == sorted(
        (c.name, 1, s) for c in budget.budget_cells() for s in (0, 1)
    )
    split = params.data.train_subset - params.data.val_size  # TINY's train split: every size takes all of it
    for r in results:
        size = r["params"]["train"]["subset"]
        assert r["epochs"] == len(r["history"]) == (2 if size is None else round(100_000 / size))
        assert r["transfer_images"] == split
    # The teacher's outputs were recorded ahead, once per (size, seed), and replayed by kd and srd alike.
    fills = [r.getMessage() for r in caplog.records if r.getMessage().startswith("study: teacher outputs for ")]
    kd_cells = [c.name for c in budget.budget_cells() if c.method == "kd"]
    assert sorted(fills) == sorted(
        f"study: teacher outputs for {cell}/data1-seed{s}: {budget.epochs(n)} epoch(s) recorded"
        for cell, n in zip(kd_cells, budget.SIZES, strict=True)
        for s in (0, 1)
    )
    keys = [json.loads(p.read_text()) for p in Path(params.paths.teacher_cache).glob("*/key.json")]
    budget_keys = sorted((k["subset"] or 0, k["view_seed"]) for k in keys if k["sample_seed"] == 1)
    assert budget_keys == sorted((n or 0, s) for n in budget.SIZES for s in (0, 1))

    top1 = {(r["cell"], r["seed"]): r["test_top1"] for r in results}
    report = (study / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| 5k |"))
    diffs = [top1[("budget_5k_srd", s)] - top1[("budget_5k_scratch", s)] for s in (0, 1)]
    low, high = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert f"{100 * statistics.fmean(diffs):+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]" in row
    assert f"| {split:,} | 20 |" in row
    assert (study / budget.PLOT_FILE).exists() and not (study / "study.png").exists()

    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    study_id = json.loads((first / "study.json").read_text())["study_id"]
    assert json.loads((study / "study.json").read_text())["study_id"] == study_id
    runs = client.search_runs([experiment], filter_string=f"tags.`{STUDY_ID}` = '{study_id}'", max_results=500)
    (parent,) = [r for r in runs if r.data.tags.get(STEP) == "study"]
    cells = [r for r in runs if r.data.tags.get(STEP) == "study_cell"]
    assert sorted(r.data.tags[STUDY_PHASE] for r in cells) == ["budget"] * 15 + ["main"] * 2
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parent.info.run_id}
    assert "budget/report.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "budget")}
    assert "report.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}  # the first study's, kept


def test_a_later_phase_refuses_method_settings_other_than_the_tuned_ones(
    make_params: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tuning.json is written by hand here (what --tune writes, test_study_tuning checks): the refusal is the point."""
    params = make_params(**TINY)
    tuned = tmp_path / "study-tune"
    write_json(tuned / "study.json", {"study_id": "abc"})
    write_json(
        tuned / "tuning.json",
        {
            "selected_on": "val_top1",
            "choices": {
                "kd": {
                    "overrides": [
                        f"method.kd.temperature={params.method.kd.temperature + 1}",
                        f"method.kd.ce_weight={params.method.kd.ce_weight}",
                    ]
                }
            },
        },
    )

    assert (
        main(
            [
                "study",
                "-c",
                str(write_params(params, tmp_path / "p.yaml")),
                "--dir",
                str(tmp_path / "study-confirm"),
                "--confirm",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        f"method.kd.temperature is {params.method.kd.temperature!r}, tuned {params.method.kd.temperature + 1!r} (kd)"
        in err
    )
    assert "ce_weight" not in err and not (tmp_path / "study-confirm").exists()


def test_gap_teaches_kd_and_srd_from_three_teachers_and_pairs_srd_against_kd_per_teacher(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    params = make_params(**TINY, validate__corruptions="none")
    params_file = write_params(params, tmp_path / "params.yaml")
    first = tmp_path / "study-tune"  # joined: its kd cell and the gap's share a name and a parent run
    assert (
        main(["study", "-c", str(params_file), "--dir", str(first), "--cells", "kd", "--seeds", "0", "--no-gap"]) == 0
    )
    study = tmp_path / "study-gap"
    assert (
        main(["study", "-c", str(params_file), "--dir", str(study), "--gap", "--seeds", "0", "1", "--jobs", "2"]) == 0
    )

    results = [json.loads(p.read_text()) for p in sorted(study.glob("runs/*/*/result.json"))]
    cells = ["kd", "srd", *(f"gap_{role}_{m}" for role in ("small", "large") for m in ("kd", "srd"))]
    assert sorted((r["cell"], r["data_seed"], r["seed"]) for r in results) == sorted(
        (c, 1, s) for c in cells for s in (0, 1)
    )
    archs = {
        json.loads(p.read_text())["role"]: json.loads(p.read_text())["arch"]
        for p in (study / "teachers").glob("*.json")
    }
    assert archs == {"main": params.teacher.arch, "small": "cnn16_fc256", "large": "cnn64_fc1024"}

    top1 = {(r["cell"], r["seed"]): r["test_top1"] for r in results}
    report = (study / "report.md").read_text()
    for role, kd, srd in (
        ("small", "gap_small_kd", "gap_small_srd"),
        ("main", "kd", "srd"),
        ("large", "gap_large_kd", "gap_large_srd"),
    ):
        row = next(line for line in report.splitlines() if line.startswith(f"| {role}: "))
        diffs = [top1[(srd, s)] - top1[(kd, s)] for s in (0, 1)]
        low, high = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
        assert f"{100 * statistics.fmean(diffs):+.2f} points, 95 % CI [{100 * low:+.2f}, {100 * high:+.2f}], n=2" in row

    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    study_id = json.loads((study / "study.json").read_text())["study_id"]
    runs = client.search_runs([experiment], filter_string=f"tags.`{STUDY_ID}` = '{study_id}'", max_results=500)
    assert sorted(r.data.tags[STUDY_PHASE] for r in runs if r.data.tags.get(STEP) == "study_cell") == ["gap"] * 6 + [
        "main"
    ]
    (parent,) = [r for r in runs if r.data.tags.get(STEP) == "study"]
    first_kd = json.loads((first / "runs/kd/seed0/result.json").read_text())["test_top1"]
    assert parent.data.metrics["kd.test_top1_mean"] == first_kd
    assert parent.data.metrics["gap.kd.test_top1_mean"] == pytest.approx(
        statistics.fmean(top1[("kd", s)] for s in (0, 1))
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--confirm", "--cells", "srd"], "--confirm names its own cells; leave out --cells"),
        (["--tune", "--confirm"], "--tune and --confirm are separate phases of the study; give one"),
        (["--data-seeds", "1", "1"], "--data-seeds: give distinct seeds, got [1, 1]"),
        (["--gap", "--no-gap"], "--gap is the capacity gap; leave out --no-gap"),
        (["--budget", "--confirm"], "--confirm and --budget are separate phases of the study; give one"),
        (["--budget", "--cells", "srd"], "--budget names its own cells; leave out --cells"),
        (["--budget", "--join", "nowhere"], "--join: nowhere holds no study (study.json missing)"),
    ],
)
def test_a_phase_refuses_contradictory_arguments_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["study", "-c", PARAMS_FILE, "--dir", str(tmp_path / "s"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"kdpipe: error: {message}"
    assert not (tmp_path / "s").exists()
