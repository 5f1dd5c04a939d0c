"""Validate's export with a teacher a team brings: its figures only feed the cost table, so one that cannot be
exported is recorded as not measured, with why, and the rest is measured on the teacher as stored. The study
measures such a teacher too, its Kubeflow Model artifact describes it, and the whole Kubeflow pipeline runs with
it under kfp's local runner. Real Fashion-MNIST, ``kdpipe run`` with the export on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from conftest import EXPORT_ON, make_params_for
from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData, load_prepared
from kdpipe.infra.files import file_sha256
from kdpipe.kubeflow.artifacts import describe_model
from kdpipe.study.runner import execute_teacher
from kdpipe.study.tasks import TeacherTask
from pipeline_artifacts import _outputs, run_local

KDPIPE = str(Path(sys.executable).with_name("kdpipe"))
SMALL = {"data__train_subset": 300, "data__val_size": 60, "data__test_subset": 200, "train__batch_size": 60}


def _net(channels: int) -> nn.Module:
    """A team's classifier as plain torch layers (importable wherever it is unpickled)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    ).eval()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, raw_root: Path) -> tuple[Path, PreparedData]:
    root = tmp_path_factory.mktemp("foreign-validate")
    params = make_params_for(root, raw_root, **SMALL)
    steps.prepare_data(params)
    return root, load_prepared(params.paths.prepared)


@pytest.fixture(scope="module")
def torchscript(prepared: tuple[Path, PreparedData]) -> Path:
    path = prepared[0] / "teacher-script.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_net(1)).save(str(path))
    return path


def _params(
    tmp_path: Path, raw_root: Path, prepared: tuple[Path, PreparedData], tracking__uri: str = "", **teacher: object
) -> Params:
    """Export on; the teacher's keys as given; tracking to ``tracking__uri`` when given, else off."""
    teacher = {"classes": prepared[1].classes, **teacher}
    tracking = {"tracking__enabled": True, "tracking__uri": tracking__uri} if tracking__uri else {}
    return make_params_for(
        tmp_path,
        raw_root,
        **SMALL,
        **EXPORT_ON,
        paths__prepared=str(prepared[0] / "prepared"),
        **{"tracking__enabled": False, **tracking},
        **{f"teacher__{k}": v for k, v in teacher.items()},
    )


def _run(params: Params, cwd: Path) -> dict:
    params_file = cwd / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    result = subprocess.run([KDPIPE, "run", "-c", str(params_file)], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    deployment = json.loads((Path(params.paths.validation) / "metrics.json").read_text())["deployment"]
    return {**deployment, "stderr": result.stderr, "report": (Path(params.paths.validation) / "report.md").read_text()}


def test_kdpipe_run_with_a_torchscript_teacher_says_its_onnx_figures_were_not_measured_and_why(
    prepared: tuple[Path, PreparedData], torchscript: Path, raw_root: Path, tmp_path: Path
) -> None:
    params = _params(tmp_path, raw_root, prepared, source=str(torchscript))
    d = _run(params, tmp_path)
    reason = d["not_measured"]["teacher"]["onnx"]
    assert "TorchScript" in reason
    assert sorted(d["cost"]["teacher"]) == ["pytorch"]
    assert sorted(d["cost"]["student"]) == ["onnx", "onnx_int8", "openvino", "openvino_int8", "pytorch"]
    assert d["cost"]["teacher"]["pytorch"]["size_kb"] == torchscript.stat().st_size / 1024
    assert d["cost"]["teacher"]["pytorch"]["p50_ms"] > 0
    assert "teacher" not in d["parity"] and "teacher_onnx" not in d["files"]
    assert not (Path(params.paths.validation) / "teacher.onnx").exists()
    assert f"teacher ONNX fp32: not measured ({reason})" in d["report"]
    assert "| teacher | ONNX fp32 | not measured |" in d["report"]
    assert "the teacher's onnx cost is not measured" in d["stderr"]


def test_kdpipe_run_with_a_pickled_mlflow_teacher_fed_rgb_measures_both_teacher_formats(
    prepared: tuple[Path, PreparedData], raw_root: Path, tmp_path: Path, mlflow_server: str
) -> None:
    import mlflow

    name = f"team-{uuid.uuid4().hex[:6]}"
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("team-training")
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            _net(3), name="model", serialization_format="pickle", registered_model_name=name, pip_requirements=["torch"]
        )
    classes = prepared[1].classes
    params = _params(
        tmp_path,
        raw_root,
        prepared,
        source=f"models:/{name}/1",
        trust_pickle=True,
        classes=[*classes[1:], classes[0]],  # another order: the probe reads it through the remap
        preprocess={"image_size": 32, "channels": 3, "normalize": "imagenet"},
        tracking__uri=mlflow_server,
    )
    d = _run(params, tmp_path)
    assert "not_measured" not in d
    assert sorted(d["cost"]["teacher"]) == ["onnx", "pytorch"]
    size = sum(f.stat().st_size for f in (Path(params.paths.teacher) / "mlflow_model").rglob("*") if f.is_file())
    assert d["cost"]["teacher"]["pytorch"]["size_kb"] == size / 1024
    assert d["parity"]["teacher"]["top1_agreement"] == 1.0
    assert (Path(params.paths.validation) / "teacher.onnx").is_file()
    assert "not measured" not in d["report"]


def test_the_study_measures_a_foreign_teacher_stored_by_evaluate_teacher(
    prepared: tuple[Path, PreparedData], torchscript: Path, raw_root: Path, tmp_path: Path
) -> None:
    data = prepared[1]
    params = _params(tmp_path, raw_root, prepared, source=str(torchscript))
    steps.evaluate_teacher(params)
    info = execute_teacher(TeacherTask("teacher main", "main", tmp_path / "main.json", params.to_dict()))
    images, labels = data.split("test")
    mean, std = (torch.tensor(data.manifest[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        expected = float((_net(1)((images.float() / 255 - mean) / std).argmax(1) == labels).float().mean())
    assert info["test_top1"] == pytest.approx(expected, abs=1e-9)
    assert info["path"] == str(Path(params.paths.teacher) / "torchscript.pt")
    assert info["model_sha256"] == file_sha256(torchscript)
    assert info["arch"] == "torchscript"
    assert json.loads((tmp_path / "main.json").read_text()) == info


@dataclass
class _ModelArtifact:
    """What the Kubeflow components hand describe_model: kfp's Model, by the two attributes it reads."""

    path: str
    metadata: dict = field(default_factory=dict)


def test_the_kubeflow_teacher_artifact_of_a_torchscript_teacher_describes_it_from_its_descriptor(
    prepared: tuple[Path, PreparedData], torchscript: Path, raw_root: Path, tmp_path: Path
) -> None:
    params = _params(tmp_path, raw_root, prepared, source=str(torchscript))
    steps.evaluate_teacher(params)
    artifact = _ModelArtifact(params.paths.teacher)
    describe_model(artifact, role="teacher")
    assert artifact.metadata["format"] == "torchscript" and artifact.metadata["arch"] == "torchscript"
    assert artifact.metadata["sha256"] == file_sha256(torchscript)
    assert artifact.metadata["source"] == str(torchscript) and artifact.metadata["role"] == "teacher"
    assert artifact.metadata["classes"] == prepared[1].classes and artifact.metadata["in_channels"] == 1


def test_the_kubeflow_pipeline_runs_under_kfp_local_with_a_torchscript_teacher(
    prepared: tuple[Path, PreparedData],
    torchscript: Path,
    raw_root: Path,
    tmp_path: Path,
    mlflow_server: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every component in its own process (kfp's SubprocessRunner), the stored teacher handed from task to task
    as a Model artifact: evaluate_teacher measures the team's module, distill and validate read it back."""
    data = prepared[1]
    params = make_params_for(
        tmp_path,
        raw_root,
        **SMALL,
        paths__prepared=str(prepared[0] / "prepared"),
        teacher__source=str(torchscript),
        teacher__classes=data.classes,
        tracking__uri=mlflow_server,
        tracking__experiment=f"kfp-foreign-{uuid.uuid4().hex[:6]}",
    )
    run = run_local(params, tmp_path, capsys)
    evaluated = _outputs(run / "evaluate-teacher")["artifacts"]
    assert evaluated["teacher"]["metadata"]["format"] == "torchscript"
    assert evaluated["teacher"]["metadata"]["sha256"] == file_sha256(torchscript)
    images, labels = data.split("test")
    mean, std = (torch.tensor(data.manifest[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        expected = float((_net(1)((images.float() / 255 - mean) / std).argmax(1) == labels).float().mean())
    assert evaluated["metrics"]["metadata"]["top1"] == pytest.approx(expected, abs=1e-9)
    validated = _outputs(run / "validate-student")["artifacts"]["metrics"]["metadata"]
    assert validated["teacher.top1"] == pytest.approx(expected, abs=1e-9)
