"""timm teachers and students (a ViT student, an EfficientNet teacher) and a student's starting weights
(``student.init``), on the real Fashion-MNIST: one tiny ``kdpipe run`` shared by the module, the rest in-process."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from conftest import make_params_for
from kdpipe import identity
from kdpipe.config import Params, params_from_dict
from kdpipe.config.student import StudentConfig
from kdpipe.config.tracking import TrackingConfig
from kdpipe.data.prepared import load_prepared
from kdpipe.deploy import onnx as export
from kdpipe.infra.errors import ConfigError, ForeignFileError
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, load_model, save_model
from kdpipe.models.init_weights import load_matching, read_state
from kdpipe.models.serving import ServingClassifier, predict_unit_images
from kdpipe.models.timm_wrap import TimmClassifier, timm_net
from kdpipe.training.student_init import INIT_REPORT_FILE, init_sha256, resolve_init

KDPIPE = str(Path(sys.executable).with_name("kdpipe"))
VIT, EFFICIENTNET = "timm:test_vit", "timm:test_efficientnet"
HEAD = ("net.head.weight", "net.head.bias")


def _kdpipe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KDPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _pretrained(classes: int = 5, seed: int = 7) -> dict[str, torch.Tensor]:
    """A plain timm ViT's state dict (no kdpipe wrapper), as another team would have saved it."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in timm_net("test_vit", classes, 1, 28).state_dict().items()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory: pytest.TempPathFactory, raw_root: Path) -> tuple[Params, Path, str]:
    """`kdpipe run`: timm ViT student (starting from a DDP-saved, nested 5-class checkpoint) distilled from a timm
    EfficientNet teacher trained on the spot; a few hundred images, one epoch each."""
    work = tmp_path_factory.mktemp("timm-run")
    init = work / "vit5_ddp.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in _pretrained().items()}}, init)
    params = make_params_for(
        work,
        raw_root,
        data__train_subset=300,
        data__val_size=60,
        data__test_subset=100,
        teacher__arch=EFFICIENTNET,
        teacher__train__batch_size=64,
        student__arch=VIT,
        student__init=str(init),
        train__batch_size=64,
        validate__corruptions="none",
    )  # the ONNX export is tested in-process below: validate's five cost probes would double this run's time
    (work / "params.yaml").write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    result = _kdpipe("run", "-c", "params.yaml", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return params, work, result.stdout + result.stderr


def test_a_timm_vit_student_distils_from_a_timm_efficientnet_teacher_end_to_end(
    timm_run: tuple[Params, Path, str],
) -> None:
    params, _, output = timm_run
    assert "teacher (timm:test_efficientnet)" in output and "student (timm:test_vit)" in output
    student, record = load_model(Path(params.paths.student) / MODEL_FILE)
    assert isinstance(student, TimmClassifier) and record["arch"] == VIT and record["image_size"] == 28
    assert student.net.patch_embed.patch_size == (2, 2)  # 28 px: the patch shrinks, the grid stays test_vit's own
    teacher, teacher_record = load_model(Path(params.paths.teacher) / MODEL_FILE)
    assert isinstance(teacher, TimmClassifier) and "image_size" not in teacher_record  # a CNN takes any size
    decision = json.loads((Path(params.paths.validation) / "decision.json").read_text())
    assert decision["passed"] is True


def test_the_vit_student_exports_to_onnx_with_parity_and_quantises_quietly(
    timm_run: tuple[Params, Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params, _, _ = timm_run
    data = load_prepared(params.paths.prepared)
    m, images = data.manifest, data.split("test")[0]
    net = load_model(Path(params.paths.student) / MODEL_FILE)[0]
    path = export.to_onnx(net, m["mean"], m["std"], (1, 28, 28), tmp_path / "student.onnx", "student")
    eager = predict_unit_images(ServingClassifier(net, m["mean"], m["std"]).eval(), images)
    exported = export.onnx_logits(export.session(path, 1), images, batch_size=33)  # the batch axis is dynamic
    assert torch.allclose(exported, eager, atol=1e-4) and torch.equal(exported.argmax(1), eager.argmax(1))
    export.check_parity(export.parity(eager, exported), "student")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        int8 = export.quantize_int8(path, data.split("val")[0][:64], tmp_path / "student_int8.onnx", "student")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, warnings[:3]  # none per LayerNorm
    assert export.onnx_logits(export.session(int8, 1), images).shape == eager.shape


def test_the_distill_run_reports_which_tensors_the_init_loaded_and_which_stayed_new(
    timm_run: tuple[Params, Path, str],
) -> None:
    from mlflow import MlflowClient

    params, work, output = timm_run
    report = json.loads((Path(params.paths.student) / INIT_REPORT_FILE).read_text())
    student_names = list(load_model(Path(params.paths.student) / MODEL_FILE)[0].state_dict())
    assert report["new"] == list(HEAD)  # 5 classes in the file, 10 in the data
    assert report["loaded"] == [n for n in student_names if n not in HEAD]
    assert report["unused"] == ["head.weight", "head.bias"]
    assert report["sha256"] == _sha256(work / "vit5_ddp.pt")
    assert f"student.init {work / 'vit5_ddp.pt'}: {len(student_names) - 2} tensors loaded" in output
    client = MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    (run,) = client.search_runs([experiment], "tags.`kdpipe.step` = 'distill'")
    assert run.data.tags["kdpipe.student_init_sha256"] == report["sha256"]
    assert INIT_REPORT_FILE in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_a_file_matching_nothing_is_one_line_and_leaves_the_stored_student_alone(
    timm_run: tuple[Params, Path, str],
) -> None:
    params, work, _ = timm_run
    stored = Path(params.paths.student) / MODEL_FILE
    before = _sha256(stored)
    cnn = work / "cnn8.pt"
    torch.save(create_model("cnn8", 10, 1).state_dict(), cnn)
    result = _kdpipe("distill", "-c", "params.yaml", "-p", f"student.init={cnn}", cwd=work)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "error" in x.lower()]  # the logs before it are progress
    assert line == result.stderr.strip().splitlines()[-1] and line.startswith("kdpipe: error: student.init"), line
    assert f"student.init {cnn}: none of its" in line
    assert _sha256(stored) == before


def _layouts(state: dict[str, torch.Tensor], folder: Path) -> dict[str, Path]:
    """The same weights as teams save them."""
    ddp = {f"module.{k}": v for k, v in state.items()}
    blobs: dict[str, Any] = {
        "plain": state,
        "nested-state_dict": {"state_dict": state, "optimizer": {"lr": 0.1}},
        "nested-model": {"model": state, "epoch": 9},
        "ddp": ddp,
        "ddp-nested": {"state_dict": ddp},
        "ddp-compiled": {f"module._orig_mod.{k}": v for k, v in state.items()},
    }
    paths = {name: folder / f"{name}.pt" for name in blobs}
    for name, blob in blobs.items():
        torch.save(blob, paths[name])
    paths["safetensors"] = folder / "weights.safetensors"
    save_file(state, str(paths["safetensors"]))
    return paths


@pytest.mark.parametrize(
    "layout",
    ["plain", "nested-state_dict", "nested-model", "ddp", "ddp-nested", "ddp-compiled", "safetensors", "kdpipe-file"],
)
def test_init_loads_every_tensor_whose_name_and_shape_match(layout: str, tmp_path: Path) -> None:
    source = _pretrained()
    if layout == "kdpipe-file":
        path = tmp_path / MODEL_FILE
        net = create_model(VIT, 5, 1, 28)
        net.net.load_state_dict(source)
        save_model(path, net, VIT, [str(i) for i in range(5)], 1)
    else:
        path = _layouts(source, tmp_path)[layout]
    torch.manual_seed(0)
    student = create_model(VIT, 10, 1, 28)
    fresh_head = student.net.head.weight.detach().clone()
    report = load_matching(student, read_state(path), "student.init")
    assert report.new == HEAD
    assert len(report.loaded) == len(source) - 2
    own = student.state_dict()
    for name in report.loaded:
        assert torch.equal(own[name], source[name.removeprefix("net.")]), name
    assert torch.equal(student.net.head.weight, fresh_head)


def test_a_file_that_matches_nothing_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(create_model("cnn8", 10, 1).state_dict(), path)
    with pytest.raises(ForeignFileError) as err:
        load_matching(create_model(VIT, 10, 1, 28), read_state(path), f"student.init {path}")
    assert len(str(err.value).splitlines()) == 1 and str(err.value).startswith(f"student.init {path}: none of its")


def test_init_from_a_file_that_is_missing_or_holds_no_tensors_names_the_key(tmp_path: Path) -> None:
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    with pytest.raises(ConfigError, match=r"^student\.init: .*missing\.pt: file not found$"):
        resolve_init(StudentConfig(arch=VIT, init=str(tmp_path / "missing.pt")), tracking)
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "empty.pt")
    with pytest.raises(ConfigError, match=r"^student\.init: .*empty\.pt: holds no tensors"):
        resolve_init(StudentConfig(arch=VIT, init=str(tmp_path / "empty.pt")), tracking)


def test_init_from_an_mlflow_run_or_registered_model_takes_its_weights_file(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("init", artifact_location=str(tmp_path / "artifacts")))
    source = _pretrained()
    torch.save({"model": source}, tmp_path / "vit5.pt")
    client.log_artifact(run.info.run_id, str(tmp_path / "vit5.pt"), "weights")
    client.create_registered_model("vit-init")
    client.create_model_version("vit-init", f"runs:/{run.info.run_id}/weights", run.info.run_id)
    for init in (f"runs:/{run.info.run_id}/weights", "models:/vit-init/1"):
        resolved = resolve_init(StudentConfig(arch=VIT, init=init), TrackingConfig(uri=uri))
        assert resolved is not None and resolved.sha256 == _sha256(tmp_path / "vit5.pt")
        assert resolved.state.keys() == source.keys()
        assert all(torch.equal(resolved.state[k], v) for k, v in source.items())


def test_the_study_identity_counts_the_init_bytes_not_where_they_lie(tmp_path: Path) -> None:
    torch.save(_pretrained(), tmp_path / "a.pt")
    shutil.copyfile(tmp_path / "a.pt", tmp_path / "b.pt")  # the same bytes elsewhere
    torch.save(_pretrained(seed=8), tmp_path / "other.pt")
    base = params_from_dict({"student": {"arch": VIT}})

    def run_id(init: str) -> str:
        student = StudentConfig(arch=VIT, init=str(tmp_path / init))
        digest = init_sha256(student, base.tracking)
        assert digest == _sha256(tmp_path / init)
        p = base
        return identity.run_fingerprint(
            data=p.data, teacher=p.teacher, student=student, method=p.method, cache=p.cache, train=p.train,
            init_sha256=digest,
        )  # fmt: skip

    assert run_id("a.pt") == run_id("b.pt")
    assert run_id("a.pt") != run_id("other.pt")
    with pytest.raises(ValueError, match=r"student\.init"):
        identity.run_fingerprint(
            data=base.data, teacher=base.teacher, student=StudentConfig(arch=VIT, init=str(tmp_path / "a.pt")),
            method=base.method, cache=base.cache, train=base.train,
        )  # fmt: skip


def test_a_vit_keeps_its_token_grid_and_position_embeddings_at_28_px() -> None:
    import timm

    with torch.device("meta"):
        small = timm_net("deit_tiny_patch16_224", 10, 1, 28)
        native = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10)
    assert small.patch_embed.patch_size == (2, 2) and small.patch_embed.grid_size == (14, 14)  # 224 / 16 = 14
    assert small.pos_embed.shape == native.pos_embed.shape


def test_an_unknown_timm_name_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        params_from_dict({"student": {"arch": "timm:no_such_net"}})
    assert len(str(err.value).splitlines()) == 1
    assert "student.arch" in str(err.value) and "timm:no_such_net" in str(err.value)
