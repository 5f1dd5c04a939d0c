"""The `kdpipe` command as a user runs it: the whole pipeline end to end, and the error contract.

Everything goes through the installed console script in a subprocess, so argument parsing, the
params file, the exit status and what reaches stdout/stderr are the real ones.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import EXPORT_ON, RESHOT_COUNT
from kdpipe.config import Params

KDPIPE = str(Path(sys.executable).with_name("kdpipe"))


def _kdpipe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KDPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _write_params(path: Path, params: Params) -> Path:
    path.write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "key"),
    [
        ("train:\n  epochs: 2\n  epoch: 3\n", [], "train.epoch"),
        ('train:\n  epochs: "two"\n', [], "train.epochs"),
        ("method:\n  srd:\n    alpha: 0\n", [], "method.srd.alpha"),
        ("train:\n  epochs: 0\n", [], "train.epochs"),
        ("method:\n  srd:\n    projector: none\n", [], "method.srd.projector"),
        ("train:\n  batch_size: 1\n", [], "train.batch_size"),
        ("{}\n", ["train.epochs"], "train.epochs"),
        ("{}\n", ["method.srd.alpha=-2"], "method.srd.alpha"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "alpha-zero",
        "epochs-zero",
        "projector-none",
        "batch-size-one",
        "override-syntax",
        "override-value",
    ],
)
def test_bad_params_give_one_line_naming_the_key(
    tmp_path: Path, yaml_text: str, overrides: list[str], key: str
) -> None:
    (tmp_path / "params.yaml").write_text(yaml_text)
    args = [arg for o in overrides for arg in ("-p", o)]
    result = _kdpipe("prepare", "-c", "params.yaml", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kdpipe: error: ")
    assert key in lines[0]
    assert not (tmp_path / "data").exists(), "a rejected run must not start preparing data"


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        ("latin1", ["-c", "params.yaml"], "kdpipe: error: params.yaml: not UTF-8 text (byte 0xe9 at offset 24)"),
        ("dir", ["-c", "conf"], "kdpipe: error: conf: is a directory; name a params file (e.g. conf/params.yaml)"),
        ("utf8", ["-c", "params.yaml", "-p", "train.lr=abc"], "kdpipe: error: -p train.lr=abc: train.lr: "),
        ("utf8", ["-c", "params.yaml", "-p", "train.epochs=10000000000000000000000000000000"], "kdpipe: error: -p "),
    ],
    ids=["params-not-utf8", "params-is-a-directory", "override-named", "epochs-1e31"],
)
def test_a_bad_params_file_or_override_is_one_line_naming_where_it_came_from(
    tmp_path: Path, setup: str, args: list[str], expected: str
) -> None:
    """A params file in Latin-1, ``-c`` naming a directory, a bad ``-p`` value (named as the override, not as
    params.yaml) and an epoch count of 10^31 (an upper bound, named): one line each, no traceback, nothing
    written; the file itself is left as it was."""
    text = "# crop padding for the r\u00e9shot line\ntrain:\n  epochs: 2\n"
    if setup == "dir":
        (tmp_path / "conf").mkdir()
    else:
        (tmp_path / "params.yaml").write_bytes(text.encode("latin-1" if setup == "latin1" else "utf-8"))
    before = sorted(tmp_path.rglob("*"))
    result = _kdpipe("prepare", *args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(expected), result.stderr
    if setup == "utf8" and "train.epochs" in args[-1]:
        assert "train.epochs: Input should be less than or equal to 10000" in result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_run_writes_every_output_and_logs_to_mlflow(
    tmp_path: Path, make_params: Callable[..., Params], reshot: Path
) -> None:
    """`kdpipe run` on a small real config: all files of every step, the summary, and the MLflow runs.

    Two operational sets come in through ``-p``: the example ImageFolder (``reshot``, re-photographed
    56 px RGB PNGs) and the run's own prepared data (its val split, so its figures must equal the gate's).
    """
    from mlflow import MlflowClient

    params = make_params(
        train__epochs=2, data__train_subset=1000, data__val_size=200, data__test_subset=500, **EXPORT_ON
    )
    sets = (
        f"validate.operational=[{{name: reshot, source: '{reshot}'}}, "
        f"{{name: heldout, source: '{params.paths.prepared}', split: val}}]"
    )
    result = _kdpipe(
        "run",
        "-c",
        str(_write_params(tmp_path / "params.yaml", params)),
        "-p",
        sets,
        "-p",
        "validate.operational_min_top1={reshot: 0.0}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "teacher (cnn16)" in result.stdout and "student (cnn8)" in result.stdout
    assert f"mlflow ui --backend-store-uri {params.tracking.uri}" in result.stdout
    experiment_id = MlflowClient(params.tracking.uri).get_experiment_by_name(params.tracking.experiment).experiment_id
    assert f"runs: http://127.0.0.1:5000/#/experiments/{experiment_id}?workflowType=machine_learning" in result.stdout
    assert (
        "registered model: http://127.0.0.1:5000/#/models/kdpipe-student?workflowType=machine_learning" in result.stdout
    )

    paths = params.paths
    manifest = json.loads((Path(paths.prepared) / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 800, "val": 200, "test": 500}
    assert len(manifest["classes"]) == 10 and len(manifest["sha256"]) == 64

    teacher = json.loads((Path(paths.teacher) / "metrics.json").read_text())
    assert 0.0 <= teacher["top1"] <= 1.0 and teacher["arch"] == "cnn16"
    assert (Path(paths.teacher) / "model.pt").is_file() and (Path(paths.student) / "model.pt").is_file()

    with open(Path(paths.student) / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "loss_ce", "loss_kl", "loss_feat", "train_acc", "val_acc", "lr"} <= set(rows[0])
    for r in rows:
        parts = float(r["loss_ce"]) + float(r["loss_kl"]) + float(r["loss_feat"])
        assert float(r["loss"]) == pytest.approx(parts, rel=1e-4)

    validation = json.loads((Path(paths.validation) / "metrics.json").read_text())
    assert {"top1", "top5", "ece", "teacher_agreement", "parameters", "latency_ms_batch1"} <= set(validation["student"])
    # Decided on gate.split (val), with the corruption suite (validate.corruptions: fast, severity 3) there.
    gate = validation["gate"]
    robust = {"top1", "corrupted_top1", "mce", "relative_mce", "robustness_retention", "corruption_jpeg_s3_top1"}
    assert gate["split"] == "val" and robust <= set(gate["student"]) and robust <= set(gate["teacher"])
    assert gate["teacher"]["mce"] == pytest.approx(1.0) and validation["corruptions"].startswith("fast: 15 ")
    assert "corrupted_top1" not in validation["student"], "the test split is reported, not put through the suite"
    assert (Path(paths.validation) / "corruption_heatmap.png").is_file()
    assert "## Decided on the val split" in (Path(paths.validation) / "report.md").read_text()
    assert "val corrupted top-1" in result.stdout and "corruptions: fast: 15 corruptions" in result.stdout
    decision = json.loads((Path(paths.validation) / "decision.json").read_text())
    assert decision["passed"] is True and decision["data_sha256"] == manifest["sha256"]
    promotion = json.loads((Path(paths.promotion) / "promotion.json").read_text())
    assert promotion["data_sha256"] == manifest["sha256"]

    client = MlflowClient(tracking_uri=params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    by_step = {r.data.tags["kdpipe.step"]: r for r in runs}
    assert {"prepare_data", "evaluate_teacher", "distill", "validate_student"} <= set(by_step)
    assert len({r.data.tags["kdpipe.pipeline_run_id"] for r in runs}) == 1
    assert all(r.info.status == "FINISHED" for r in runs)
    distill_run = by_step["distill"]
    assert distill_run.data.params["method.name"] == "srd"
    for metric in ("loss", "loss_feat", "val_acc", "lr"):
        assert [m.step for m in client.get_metric_history(distill_run.info.run_id, metric)] == [1, 2], metric
    assert by_step["distill"].data.tags["kdpipe.data_sha256"] == manifest["sha256"]

    # The operational sets: measured, summarised, reported and logged; the prepared one agrees with the gate split.
    ops = validation["operational"]
    assert set(ops) == {"reshot", "heldout"} and ops["reshot"]["num_samples"] == RESHOT_COUNT
    assert ops["reshot"]["kind"] == "imagefolder" and ops["heldout"]["kind"] == "prepared"
    assert ops["heldout"]["student"]["top1"] == pytest.approx(gate["student"]["top1"], abs=1e-9)
    assert ops["heldout"]["shift"]["input_mean_shift"] == pytest.approx(0.0, abs=0.02)
    assert ops["heldout"]["shift"]["student_confidence_shift"] == pytest.approx(0.0, abs=1e-6)
    assert ops["reshot"]["shift"]["input_mean_shift"] > 0.05, "the example's camera sees more light"
    for key in ("top1", "ece", "teacher_agreement"):
        assert 0.0 <= ops["reshot"]["student"][key] <= 1.0, key
    assert ops["reshot"]["shift"]["disagreement"] == pytest.approx(1 - ops["reshot"]["student"]["teacher_agreement"])
    details = json.loads((Path(paths.validation) / "details.json").read_text())["operational"]["reshot"]
    assert len(details["student"]["per_class_accuracy"]) == 10
    assert sum(map(sum, details["student"]["confusion_matrix"])) == RESHOT_COUNT
    report = (Path(paths.validation) / "report.md").read_text()
    assert "## Operational data" in report and f"| reshot | {RESHOT_COUNT} |" in report
    assert (
        "reshot top-1" in result.stdout
        and f"operational set reshot: {RESHOT_COUNT} images from {reshot}" in result.stdout
    )
    validate_run = by_step["validate_student"]
    logged = validate_run.data.metrics
    assert logged["student_operational_reshot_top1"] == pytest.approx(ops["reshot"]["student"]["top1"])
    assert logged["teacher_operational_reshot_top1"] == pytest.approx(ops["reshot"]["teacher"]["top1"])
    assert logged["operational_reshot_disagreement"] == pytest.approx(ops["reshot"]["shift"]["disagreement"])
    inputs = {d.dataset.name: d for d in validate_run.inputs.dataset_inputs}
    assert inputs["operational-reshot"].dataset.digest == ops["reshot"]["sha256"][:36]
    assert {t.key: t.value for t in inputs["operational-heldout"].tags}["mlflow.data.context"] == "operational"

    # The export: the cost table in the closing output and the report, the files, and the figures in MLflow.
    assert "inference cost at 1 thread(s), each in a fresh process; the gate reads onnx:" in result.stdout
    for row in (
        "student  eager PyTorch",
        "student  ONNX fp32",
        "student  ONNX int8 (static QDQ)",
        "teacher  ONNX fp32",
    ):
        assert row in result.stdout, row
    deployed = validation["deployment"]
    assert (
        decision["deploy_format"] == "onnx" and decision["latency_ms"] == deployed["cost"]["student"]["onnx"]["p50_ms"]
    )
    assert "## Inference cost" in (Path(paths.validation) / "report.md").read_text()
    assert all((Path(paths.validation) / f).is_file() for f in ("student.onnx", "student_int8.onnx", "teacher.onnx"))
    assert logged["student_onnx_p95_ms"] == pytest.approx(deployed["cost"]["student"]["onnx"]["p95_ms"])
    assert logged["teacher_pytorch_memory_mb"] == pytest.approx(deployed["cost"]["teacher"]["pytorch"]["memory_mb"])
    assert logged["student_onnx_top1_agreement"] == 1.0 and "student_onnx_int8_top1_drop" in logged

    # A set whose classes differ: one line naming the set; the validation already on disk is kept.
    wrong = tmp_path / "wrong"
    shutil.copytree(reshot, wrong)
    (wrong / "Bag").rename(wrong / "Bags")
    before = (Path(paths.validation) / "decision.json").read_bytes()
    failed = _kdpipe(
        "validate",
        "-c",
        str(tmp_path / "params.yaml"),
        "-p",
        f"validate.operational=[{{name: line4, source: '{wrong}'}}]",
        cwd=tmp_path,
    )
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode != 0 and len(lines) == 1, failed.stderr
    assert (
        lines[0].startswith("kdpipe: error: validate.operational 'line4'")
        and "missing ['Bag'], extra ['Bags']" in lines[0]
    )
    assert (Path(paths.validation) / "decision.json").read_bytes() == before
