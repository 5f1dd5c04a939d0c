"""What a run of the nightly pipeline under kfp.local must leave behind, opened and checked artifact by
artifact: shared by the subprocess run (tests/test_kubeflow_local.py) and the run inside the image
(tests/image/test_image.py), so both check the same things."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow
import onnx as onnx_lib
import pytest
import torch

from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.kubeflow.params import dump_params
from kdpipe.models.file import load_model


def run_local(params: Params, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """``kdpipe pipeline run-local`` with ``params`` (written to tmp_path); the directory of the run's artifacts."""
    params_file = tmp_path / "params.yaml"
    params_file.write_text(dump_params(params))
    assert main(["pipeline", "run-local", "-c", str(params_file), "--pipeline-root", str(tmp_path / "kfp")]) == 0
    found = re.search(r"^artifacts of the run: (.+)$", capsys.readouterr().out, re.MULTILINE)
    assert found, "run-local did not say where the run's artifacts are"
    return Path(found.group(1))


def _outputs(task_dir: Path) -> dict[str, Any]:
    """What a task reported to Kubeflow: artifact metadata by name, and its parameter outputs."""
    executor = json.loads((task_dir / "executor_output.json").read_text())
    artifacts = {name: entry["artifacts"][0] for name, entry in executor.get("artifacts", {}).items()}
    return {"artifacts": artifacts, "parameters": executor.get("parameterValues", {})}


def check_run(run: Path, params: Params, ui: str, operational_count: int) -> None:
    """Every task's artifacts in ``run``; ``ui``: the MLflow UI the run report links to."""
    # Dataset: the prepared data set with its manifest.
    dataset_dir = run / "prepare-data" / "dataset"
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 800, "val": 200, "test": 500}
    assert len(manifest["classes"]) == 10
    data = load_prepared(dataset_dir)
    prepared = _outputs(run / "prepare-data")["artifacts"]
    assert prepared["dataset"]["metadata"]["sha256"] == manifest["sha256"] == data.sha256
    assert prepared["metrics"]["metadata"]["test_size"] == 500

    # Teacher: a Model artifact and its test metrics.
    teacher = _outputs(run / "evaluate-teacher")["artifacts"]
    assert 0.0 <= teacher["metrics"]["metadata"]["top1"] <= 1.0
    assert teacher["teacher"]["metadata"]["arch"] == params.teacher.arch
    assert (run / "evaluate-teacher" / "teacher" / "model.pt").exists()

    # Teacher outputs: the teacher's features and logits for every view distill trains on, an index per epoch.
    cached = _outputs(run / "teacher-outputs")["artifacts"]["outputs"]["metadata"]
    assert cached["recorded"] == 2 and cached["world_size"] == 1
    assert len(list((run / "teacher-outputs" / "outputs").rglob("epoch*-rank0.json"))) == 2

    # Student: a Model artifact that loads and predicts.
    distilled = _outputs(run / "distill")["artifacts"]
    assert distilled["student"]["metadata"]["framework"] == "pytorch"
    assert distilled["metrics"]["metadata"]["epochs"] == 2
    student, record = load_model(run / "distill" / "student" / "model.pt")
    assert record["arch"] == params.student.arch
    x, _ = data.split("test")
    mean = torch.tensor(manifest["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(manifest["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = student((x[:64].float() / 255 - mean) / std)
    assert logits.shape == (64, 10)
    assert torch.isfinite(logits).all()

    # Validation: metrics, the confusion matrix, the report and the verdict.
    validated = _outputs(run / "validate-student")
    metrics = validated["artifacts"]["metrics"]["metadata"]
    assert 0.0 <= metrics["student.top1"] <= 1.0 and metrics["student.parameters"] < metrics["teacher.parameters"]
    matrix = validated["artifacts"]["confusion"]["metadata"]["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == manifest["classes"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == 500
    report = (run / "validate-student" / "report").read_text()
    assert report.startswith("# kdpipe run report") and "Validation passed" in report
    assert f"({ui}/#/experiments/" in report and "?workflowType=machine_learning)" in report
    assert f"[the registered student]({ui}/#/models/kdpipe-student?workflowType=machine_learning)" in report
    assert validated["parameters"]["Output"] is True
    # The example operational set: its figures in the Metrics artifact, the run report and the validation artifact.
    assert (
        0.0 <= metrics["operational.reshot.student.top1"] <= 1.0 and "operational.reshot.shift.disagreement" in metrics
    )
    assert f"| top-1 on operational set reshot ({operational_count} images) |" in report
    details = json.loads((run / "validate-student" / "validation" / "details.json").read_text())
    assert details["operational"]["reshot"]["num_samples"] == operational_count
    assert (run / "validate-student" / "validation" / "corruption_heatmap.png").is_file()
    # The student's ONNX exports: Model artifacts that load and carry their parity and cost.
    onnx, int8 = validated["artifacts"]["onnx_model"]["metadata"], validated["artifacts"]["onnx_int8_model"]["metadata"]
    assert onnx["framework"] == "onnx" and onnx["parity_top1_agreement"] == 1.0 and onnx["cost_p50_ms"] > 0
    assert int8["format"] == "onnx_int8" and isinstance(int8["offered"], bool)
    onnx_lib.checker.check_model(str(run / "validate-student" / "onnx_model"))
    assert metrics["deployment.cost.student.onnx_int8.p50_ms"] > 0

    # Promotion: ran because validation passed, and recorded its decision.
    promoted = _outputs(run / "promote")
    record = json.loads((run / "promote" / "promotion" / "promotion.json").read_text())
    assert promoted["parameters"]["Output"] is record["promoted"]
    assert promoted["artifacts"]["promotion"]["metadata"]["promoted"] is record["promoted"]


def check_tracking(params: Params) -> None:
    """MLflow: one run per step, tied together by the Kubeflow run's id."""
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    by_run = [r.data.tags for r in client.search_runs([experiment.experiment_id]) if "kdpipe.step" in r.data.tags]
    steps = {t.get("kdpipe.step") for t in by_run}
    assert {"prepare_data", "evaluate_teacher", "distill", "validate_student"} <= steps
    assert len({t["kdpipe.pipeline_run_id"] for t in by_run}) == 1
    assert all(t["kdpipe.kubeflow_run_id"] == t["kdpipe.pipeline_run_id"] for t in by_run)
