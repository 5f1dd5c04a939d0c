"""`kdpipe study` on a tiny real Fashion-MNIST run: report, MLflow logging, resume, parallel jobs."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import torch

from conftest import EXPORT_ON, TINY, write_params
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.infra.errors import ConfigError
from kdpipe.study import robustness_comparison, run_study
from kdpipe.study.mlflow_log import PARENT_TAG
from kdpipe.tracking.tags import STEP
from kdpipe.tracking.tags import STUDY_ID as STUDY_TAG


@pytest.fixture
def tiny(make_params: Callable[..., Params]) -> Callable[..., Params]:
    return lambda **kw: make_params(**{**TINY, **kw})


def _mtimes(study: Path) -> dict[str, int]:
    return {str(p.relative_to(study)): p.stat().st_mtime_ns for p in sorted(study.glob("runs/*/*/result.json"))}


def _study_runs(params: Params, study_id: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    return list(client.search_runs([experiment.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study_id}'"))


def test_study_writes_report_and_logs_a_study_computed_without_tracking_once(
    tiny: Callable[..., Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "study"
    offline = tiny(tracking__enabled=False, **EXPORT_ON)
    first = run_study(offline, study, seeds=[0, 1], cells=["scratch", "srd"], jobs=1, gap=False)

    assert sorted(first["ran"]) == ["scratch/seed0", "scratch/seed1", "srd/seed0", "srd/seed1"]
    report = (study / "report.md").read_text()
    assert "| scratch | cross-entropy only" in report and "| srd | the recipe" in report
    assert "srd - scratch:" in report
    # Robustness: each run and the teacher measured on the test split's corruption suite; retention as defined.
    srd0 = json.loads((study / "runs/srd/seed0/result.json").read_text())
    teacher = json.loads((study / "teachers/main.json").read_text())
    assert 0 <= srd0["test_corrupted_top1"] <= 1 and len(srd0["test_corruptions"]) == 15
    assert srd0["test_corrupted_top1"] == pytest.approx(sum(srd0["test_corruptions"].values()) / 15)
    expected = (srd0["test_corrupted_top1"] / srd0["test_top1"]) / (
        teacher["test_corrupted_top1"] / teacher["test_top1"]
    )
    assert robustness_comparison.retention(srd0, teacher) == pytest.approx(expected)
    assert "Robustness (corruption suite on the test split" in report
    # The last compression step: each student's ONNX static int8 test top-1 beside its fp32 one.
    assert "| ONNX int8 test top-1 |" in report and 0 <= srd0["test_int8_top1"] <= 1
    assert (Path(srd0["params"]["paths"]["student"]) / "student_int8.onnx").is_file()
    assert "- srd - scratch, mean corrupted top-1: " in report and "- srd - scratch, retention: " in report
    assert (study / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((study / "results.csv").open()))
    assert [(r["cell"], r["seed"]) for r in rows] == [("scratch", "0"), ("srd", "0"), ("scratch", "1"), ("srd", "1")]
    assert all(0 <= float(r["test_top1"]) <= 1 and float(r["images_per_s"]) > 0 for r in rows)
    cells = {c["cell"]: c for c in json.loads((study / "results.json").read_text())["cells"]}
    assert cells["srd"]["delta_vs_scratch"] == pytest.approx(
        cells["srd"]["test_top1_mean"] - cells["scratch"]["test_top1_mean"]
    )
    before = _mtimes(study)
    assert len(before) == 4

    online = tiny(**EXPORT_ON)
    logged = run_study(online, study, seeds=[0, 1], cells=["scratch", "srd"], jobs=1, gap=False)
    again = run_study(online, study, seeds=[0, 1], cells=["scratch", "srd"], jobs=1, gap=False)

    assert logged["ran"] == again["ran"] == []
    assert _mtimes(study) == before
    assert logged["mlflow"]["logged_cells"] == 2 and again["mlflow"]["logged_cells"] == 0
    runs = _study_runs(online, first["study_id"])
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    assert len(parents) == 1
    parent_id = parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent_id]
    assert sorted(r.data.tags["kdpipe.study.cell"] for r in children) == ["scratch", "srd"]
    child_ids = {r.info.run_id for r in children}
    seeds = [r for r in runs if r.data.tags.get(PARENT_TAG) in child_ids]
    assert len(seeds) == 4 and len(runs) == 7
    srd_seed = next(r for r in seeds if r.info.run_name == "srd-seed0")
    assert srd_seed.data.metrics["test_top1"] == pytest.approx(
        json.loads((study / "runs/srd/seed0/result.json").read_text())["test_top1"]
    )
    assert "loss_feat" in srd_seed.data.metrics
    assert {a.path for a in mlflow.MlflowClient(online.tracking.uri).list_artifacts(parent_id)} == {
        "report.md",
        "study.png",
        "stability.png",
        "results.json",
        "results.csv",
    }  # fmt: skip  (stability.png: srd's learning curves and projector rank)


def test_study_runs_in_worker_processes_and_resumes_where_it_stopped(
    tiny: Callable[..., Params], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = tmp_path / "study"
    params = tiny(tracking__enabled=False)
    parallel = run_study(params, study, seeds=[0, 1], cells=["scratch"], jobs=2, gap=False)
    pids = {json.loads((study / f"runs/scratch/seed{s}/result.json").read_text())["pid"] for s in (0, 1)}
    assert sorted(parallel["ran"]) == ["scratch/seed0", "scratch/seed1"]
    assert os.getpid() not in pids
    before = _mtimes(study)

    extended = run_study(params, study, seeds=[0, 1], cells=["scratch", "kd"], jobs=1, gap=False)
    assert sorted(extended["kept"]) == ["scratch/seed0", "scratch/seed1"]
    assert sorted(extended["ran"]) == ["kd/seed0", "kd/seed1"]
    assert {k: v for k, v in _mtimes(study).items() if k.startswith("runs/scratch")} == before

    result_path = study / "runs/kd/seed1/result.json"
    finished = json.loads(result_path.read_text())
    weights = torch.load(study / "runs/kd/seed1/student/model.pt", weights_only=True)["state_dict"]
    result_path.unlink()
    caplog.set_level("INFO", logger="kdpipe")
    resumed = run_study(params, study, seeds=[0, 1], cells=["scratch", "kd"], jobs=1, gap=False)

    assert resumed["ran"] == ["kd/seed1"]
    assert "resuming from" in caplog.text
    again = json.loads(result_path.read_text())
    assert again["history"] == finished["history"] and again["test_top1"] == finished["test_top1"]
    rebuilt = torch.load(study / "runs/kd/seed1/student/model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], rebuilt[k]) for k in weights)


def test_capacity_gap_trains_each_teacher_once_and_reuses_the_study_teacher(
    tiny: Callable[..., Params], tmp_path: Path
) -> None:
    study = tmp_path / "study"
    params = tiny(tracking__enabled=False)
    cells = ["kd", "gap_small_kd", "gap_large_kd"]
    summary = run_study(params, study, seeds=[0], cells=cells, small_teacher="cnn16", jobs=1)  # large: the study's

    assert sorted(summary["ran"]) == ["gap_small_kd/seed0", "kd/seed0"]
    small = json.loads((study / "teachers/small.json").read_text())
    assert (
        small["arch"] == "cnn16"
        and small["parameters"] > json.loads((study / "teachers/main.json").read_text())["parameters"]
    )
    assert (
        json.loads((study / "runs/gap_small_kd/seed0/result.json").read_text())["params"]["teacher"]["arch"] == "cnn16"
    )
    report = (study / "report.md").read_text()
    assert "| small: cnn16 |" in report and "| main = large: cnn8 |" in report and "| large:" not in report


def test_cli_study_reruns_a_run_whose_params_changed(
    tiny: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = write_params(tiny(tracking__enabled=False), tmp_path / "params.yaml")
    args = ["study", "-c", str(params_file), "--dir", str(tmp_path / "study"), "--cells", "scratch", "--seeds", "0"]

    assert main(args) == 0
    assert "| scratch |" in capsys.readouterr().out
    first = _mtimes(tmp_path / "study")
    assert main([*args, "-p", "train.lr=0.05"]) == 0
    assert _mtimes(tmp_path / "study") != first
    result = json.loads((tmp_path / "study/runs/scratch/seed0/result.json").read_text())
    assert result["params"]["train"]["lr"] == 0.05
    assert "kdpipe study -c" in (tmp_path / "study/report.md").read_text()

    assert main([*args[:-4], "--cells", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdpipe: error: --cells: unknown cell(s) nope; available:") and "\n" not in err


def test_cli_study_keeps_a_finished_run_when_only_another_methods_settings_change(
    tiny: Callable[..., Params], tmp_path: Path
) -> None:
    """Tuning one method changes its defaults in params.yaml; the finished runs of the other methods stay valid."""
    params_file = write_params(tiny(tracking__enabled=False), tmp_path / "params.yaml")
    study = tmp_path / "study"
    args = ["study", "-c", str(params_file), "--dir", str(study), "--cells", "scratch", "kd", "--seeds", "0"]

    assert main(args) == 0
    first = _mtimes(study)
    assert sorted(first) == ["runs/kd/seed0/result.json", "runs/scratch/seed0/result.json"]
    assert main([*args, "-p", "method.srd.alpha=2", "-p", "method.fitnet.feat_weight=3", "-p", "cache.mode=off"]) == 0
    assert _mtimes(study) == first
    assert main([*args, "-p", "method.kd.temperature=2"]) == 0
    second = _mtimes(study)
    assert second["runs/scratch/seed0/result.json"] == first["runs/scratch/seed0/result.json"]
    assert second["runs/kd/seed0/result.json"] != first["runs/kd/seed0/result.json"]
    assert json.loads((study / "runs/kd/seed0/result.json").read_text())["params"]["method"]["kd"]["temperature"] == 2


def test_cli_study_measures_finished_runs_again_without_retraining_when_the_measurements_change(
    tiny: Callable[..., Params], tmp_path: Path
) -> None:
    """A phase run with ``-p validate.corruptions=none`` and then without it: the kept runs and teacher would
    otherwise lack the corruption figures, and the report its robustness table."""
    params_file = write_params(tiny(tracking__enabled=False), tmp_path / "params.yaml")
    study = tmp_path / "study"
    args = ["study", "-c", str(params_file), "--dir", str(study), "--cells", "kd", "srd", "--seeds", "0"]

    def results() -> dict[str, dict[str, object]]:
        return {c: json.loads((study / f"runs/{c}/seed0/result.json").read_text()) for c in ("kd", "srd")}

    assert main([*args, "-p", "validate.corruptions=none"]) == 0
    before = results()
    assert not any("test_corrupted_top1" in r for r in before.values())
    assert "Robustness (corruption suite" not in (study / "report.md").read_text()

    assert main(args) == 0
    after = results()
    for cell in ("kd", "srd"):
        assert 0 <= after[cell]["test_corrupted_top1"] <= 1
        assert (
            after[cell]["history"] == before[cell]["history"]
        )  # resumed after its last epoch: measured, not retrained
        assert after[cell]["test_top1"] == before[cell]["test_top1"]
    assert "test_corrupted_top1" in json.loads((study / "teachers/main.json").read_text())
    assert "Robustness (corruption suite" in (study / "report.md").read_text()


def test_a_rerun_cell_replaces_its_mlflow_runs_instead_of_keeping_the_stale_ones(
    tiny: Callable[..., Params], tmp_path: Path
) -> None:
    params = tiny()
    params_file = write_params(params, tmp_path / "params.yaml")
    study = tmp_path / "study"
    args = ["study", "-c", str(params_file), "--dir", str(study), "--cells", "scratch", "--seeds", "0"]

    assert main(args) == 0
    assert main([*args, "-p", "train.lr=0.05"]) == 0
    result = json.loads((study / "runs/scratch/seed0/result.json").read_text())
    runs = _study_runs(params, json.loads((study / "study.json").read_text())["study_id"])
    (cell,) = [r for r in runs if r.data.tags.get(STEP) == "study_cell"]
    (seed,) = [r for r in runs if r.data.tags.get(STEP) == "study_run"]
    assert cell.data.params["train.lr"] == "0.05"
    assert seed.data.metrics["test_top1"] == result["test_top1"]
    assert seed.data.tags[PARENT_TAG] == cell.info.run_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": [0, 0]}, "--seeds: give distinct seeds"),
        ({"jobs": 0}, "--jobs: must be at least 1"),
        ({"large_teacher": "resnet999"}, "--large-teacher: unknown model 'resnet999'"),
    ],
)
def test_study_refuses_bad_arguments_before_any_work(
    tiny: Callable[..., Params], tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_study(tiny(tracking__enabled=False), tmp_path / "study", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "study").exists()


def test_the_paired_interval_is_the_student_t_interval_of_the_differences() -> None:
    mean, lo, hi = robustness_comparison.paired_interval([0.91, 0.92, 0.95], [0.90, 0.90, 0.92])
    # differences 0.01, 0.02, 0.03: mean 0.02, sample std 0.01, t(0.975, 2) = 4.302652729911275
    half = 4.302652729911275 * 0.01 / 3**0.5
    assert (mean, lo, hi) == pytest.approx((0.02, 0.02 - half, 0.02 + half))


def test_a_robustness_difference_whose_interval_contains_zero_is_not_claimed() -> None:
    teacher = {"arch": "t", "test_top1": 0.9, "test_corrupted_top1": 0.6}
    run = lambda seed, clean, corrupted: {"seed": seed, "test_top1": clean, "test_corrupted_top1": corrupted}  # noqa: E731
    cells = {
        "srd": [run(0, 0.88, 0.60), run(1, 0.88, 0.58), run(2, 0.88, 0.62)],
        "kd": [run(0, 0.88, 0.59), run(1, 0.88, 0.60), run(2, 0.88, 0.60)],
        "scratch": [run(0, 0.86, 0.50), run(1, 0.86, 0.51), run(2, 0.86, 0.52)],
    }
    text = "\n".join(robustness_comparison.section(cells, teacher))
    assert "- srd - kd, mean corrupted top-1: +0.33 [" in text
    assert "over 3 pairs: no difference shown (the interval contains 0)" in text
    assert "- srd - scratch, mean corrupted top-1: +9.00 [" in text and "srd higher than scratch" in text
    assert (
        robustness_comparison.section(
            {k: [{**r, "test_corrupted_top1": None} for r in v] for k, v in cells.items()}, {"test_top1": 0.9}
        )
        == []
    )
