"""The whole Kubeflow pipeline, run by `kdpipe pipeline run-local` (kfp.local's SubprocessRunner) on a
small Fashion-MNIST subset.

Every component runs as a subprocess of this Python (``use_venv=False``), reads and writes real kfp
artifacts, and logs to a real MLflow store; the test then opens every artifact the run produced.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx as onnx_lib
import pytest
import torch

from conftest import EXPORT_ON, RESHOT_COUNT
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.kubeflow.params import dump_params
from kdpipe.model_file import load_model


def _outputs(task_dir: Path) -> dict[str, Any]:
    """What a task reported to Kubeflow: artifact metadata by name, and its parameter outputs."""
    executor = json.loads((task_dir / "executor_output.json").read_text())
    artifacts = {name: entry["artifacts"][0] for name, entry in executor.get("artifacts", {}).items()}
    return {"artifacts": artifacts, "parameters": executor.get("parameterValues", {})}


def test_pipeline_runs_locally_and_produces_every_artifact(
    make_params: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str], reshot: Path
) -> None:
    params = make_params(data__train_subset=1000, data__test_subset=500, data__val_size=200,
                         train__epochs=2, train__batch_size=64,
                         validate__operational=[{"name": "reshot", "source": str(reshot)}], **EXPORT_ON)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(dump_params(params))
    assert main(["pipeline", "run-local", "-c", str(params_file), "--pipeline-root", str(tmp_path / "kfp")]) == 0
    found = re.search(r"^artifacts of the run: (.+)$", capsys.readouterr().out, re.MULTILINE)
    assert found, "run-local did not say where the run's artifacts are"
    run = Path(found.group(1))

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

    # Teacher outputs: the teacher's features and logits for every view distill trains on, one file per epoch.
    cached = _outputs(run / "teacher-outputs")["artifacts"]["outputs"]["metadata"]
    assert cached["recorded"] == 2 and cached["world_size"] == 1
    assert len(list((run / "teacher-outputs" / "outputs").rglob("epoch*-rank0.pt"))) == 2

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
    assert "(http://127.0.0.1:5000/#/experiments/" in report and "?workflowType=machine_learning)" in report
    assert "[the registered student](http://127.0.0.1:5000/#/models/kdpipe-student?workflowType=machine_learning)" in report
    assert validated["parameters"]["Output"] is True
    # The example operational set: its figures in the Metrics artifact, the run report and the validation artifact.
    assert 0.0 <= metrics["operational.reshot.student.top1"] <= 1.0 and "operational.reshot.shift.disagreement" in metrics
    assert f"| top-1 on operational set reshot ({RESHOT_COUNT} images) |" in report
    details = json.loads((run / "validate-student" / "validation" / "details.json").read_text())
    assert details["operational"]["reshot"]["num_samples"] == RESHOT_COUNT
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

    # MLflow: one run per step, tied together by the Kubeflow run's id.
    with sqlite3.connect(tmp_path / "mlruns.db") as con:
        tags = con.execute("SELECT run_uuid, key, value FROM tags WHERE key IN "
                           "('kdpipe.step', 'kdpipe.pipeline_run_id', 'kdpipe.kubeflow_run_id')")
        by_run: dict[str, dict[str, str]] = {}
        for run_uuid, key, value in tags:
            by_run.setdefault(run_uuid, {})[key] = value
    steps = {t["kdpipe.step"] for t in by_run.values()}
    assert {"prepare_data", "evaluate_teacher", "distill", "validate_student"} <= steps
    assert len({t["kdpipe.pipeline_run_id"] for t in by_run.values()}) == 1
    assert all(t["kdpipe.kubeflow_run_id"] == t["kdpipe.pipeline_run_id"] for t in by_run.values())
