"""A team's own teacher, in every form teams keep one: trained here by plain PyTorch code (a torchvision ResNet-18
fed 32-px RGB with ImageNet's normalisation, and a timm EfficientNet fed the greyscale images as they are), then
handed to kdpipe as an MLflow pickle or pt2 model, a TorchScript file, a torch.export program, a bare state dict
and a DDP one. Whatever the form, kdpipe's top-1 is the original module's and its pooled features are the
original's at the penultimate layer. Real Fashion-MNIST, a real ``mlflow server``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
import yaml
from torch import nn

from conftest import make_params_for
from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData, load_prepared
from kdpipe.evaluation.metrics import classification_metrics, predict_logits
from kdpipe.infra.errors import KdpipeError
from kdpipe.teacher import source as teacher
from kdpipe.teacher.stored import DESCRIPTOR
from kdpipe.training.runtime import eval_loader, make_runtime

KDPIPE = str(Path(sys.executable).with_name("kdpipe"))
IMAGENET = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
FORMATS = ("mlflow-pickle", "mlflow-pt2", "torchscript", "pt2", "state_dict", "ddp_state_dict")
PIP = ["torch"]  # named, so that MLflow does not spend seconds inferring them
TRAIN_EPOCHS = 8  # the team's own training, done here: see _train
SMALL = {"data__train_subset": 300, "data__val_size": 60, "data__test_subset": 200, "train__batch_size": 60}


@dataclass(frozen=True)
class Family:
    arch: str
    preprocess: dict[str, Any]

    def feed(self, images: torch.Tensor, data: PreparedData) -> torch.Tensor:
        """The input the team trained on, computed here from the uint8 images, independently of kdpipe: ImageNet's
        statistics, or the training images' own mean and std (the prepared manifest's, as the team's own code
        would compute them on these images)."""
        x = images.float() / 255
        if self.preprocess:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
            return (x.repeat(1, 3, 1, 1) - IMAGENET[0]) / IMAGENET[1]
        return (x - data.manifest["mean"][0]) / data.manifest["std"][0]

    def build(self) -> nn.Module:
        if self.arch.startswith("torchvision:"):
            return torchvision.models.resnet18(num_classes=10)
        return timm.create_model("test_efficientnet", num_classes=10, in_chans=1)

    def features(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features as each library defines them."""
        if self.arch.startswith("torchvision:"):
            return torch.flatten(nn.Sequential(*list(net.children())[:-1])(x), 1)
        return net.forward_head(net.forward_features(x), pre_logits=True)


FAMILIES = {
    "torchvision": Family("torchvision:resnet18", {"image_size": 32, "channels": 3, "normalize": "imagenet"}),
    "timm": Family("timm:test_efficientnet", {}),
}


@dataclass
class Trained:
    net: nn.Module
    top1: float
    features: torch.Tensor


@dataclass
class World:
    root: Path
    raw_root: Path
    uri: str
    data: PreparedData
    trained: dict[str, Trained]
    published: dict[tuple[str, str], str]

    def params(self, family: str, source: str, **overrides: Any) -> Params:
        fam = FAMILIES[family]
        base = {
            **SMALL,
            "tracking__uri": self.uri,
            "tracking__experiment": "teacher-formats",
            "paths__prepared": str(self.root / "prepared"),
            "teacher__source": source,
            "teacher__arch": fam.arch,
            "teacher__classes": self.data.classes,
            "teacher__preprocess": fam.preprocess,
            "teacher__trust_pickle": "pickle" in source,
        }
        return make_params_for(self.root / uuid.uuid4().hex[:8], self.raw_root, **{**base, **overrides})


def _train(family: Family, data: PreparedData) -> Trained:
    """A few seconds of training, enough that the net predicts every class and beats chance (10 %) well:
    an equal top-1 from a net that answers one class for every image would prove nothing."""
    torch.manual_seed(0)
    net = family.build()
    x, y = data.split("train")
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(TRAIN_EPOCHS):
        net.train()
        for start in range(0, len(y), 60):
            loss = F.cross_entropy(net(family.feed(x[start : start + 60], data)), y[start : start + 60])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    test_x, test_y = data.split("test")
    with torch.no_grad():
        fed = family.feed(test_x, data)
        predicted = net(fed).argmax(1)
        top1 = float((predicted == test_y).float().mean())
        assert top1 > 0.3 and predicted.unique().numel() == 10, f"{family.arch} learned too little: top-1 {top1}"
        return Trained(net, top1, family.features(net, fed))


def _scripted(net: nn.Module, path: Path) -> Path:
    """``net`` saved as TorchScript, as a team's code would (torch's deprecation warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net.eval()).save(str(path))
    return path


def _publish(fmt: str, family: str, world: World) -> str:
    """The trained net in format ``fmt``, as the team's own code would write it; returns teacher.source."""
    import mlflow

    net, fam = world.trained[family].net, FAMILIES[family]
    example = fam.feed(world.data.split("val")[0][:4], world.data)
    path = world.root / f"{family}-{fmt}"
    if fmt == "state_dict":
        torch.save(net.state_dict(), path)
    elif fmt == "ddp_state_dict":
        torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, path)
    elif fmt == "torchscript":
        _scripted(net, path)
    elif fmt == "pt2":
        dynamic = ({0: torch.export.Dim.AUTO},)
        torch.export.save(torch.export.export(net, (example,), dynamic_shapes=dynamic), path)
    else:
        name = f"{fmt}-{family}-{uuid.uuid4().hex[:6]}"
        mlflow.set_tracking_uri(world.uri)
        mlflow.set_experiment("team-training")
        with mlflow.start_run():
            if fmt == "mlflow-pickle":
                mlflow.pytorch.log_model(
                    net, name="model", serialization_format="pickle", registered_model_name=name, pip_requirements=PIP
                )
            else:
                mlflow.pytorch.log_model(
                    net, name="model", input_example=example.numpy(), registered_model_name=name, pip_requirements=PIP
                )
        return f"models:/{name}/1"
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, raw_root: Path, mlflow_server: str) -> World:
    root = tmp_path_factory.mktemp("teacher-formats")
    params = make_params_for(root, raw_root, **SMALL)
    steps.prepare_data(params)
    data = load_prepared(params.paths.prepared)
    trained = {name: _train(fam, data) for name, fam in FAMILIES.items()}
    world = World(root, raw_root, mlflow_server, data, trained, {})
    world.published.update({(fmt, fam): _publish(fmt, fam, world) for fam in FAMILIES for fmt in FORMATS})
    return world


def _measure(params: Params, data: PreparedData) -> tuple[float, torch.Tensor]:
    """The teacher's test top-1 as kdpipe measures it, and its pooled features, read back from paths.teacher."""
    runtime = make_runtime(params.runtime)
    teacher.resolve(params, data, runtime, on_epoch=lambda record: None)
    model = teacher.load(params, data)
    loader = eval_loader(data, "test", runtime)
    top1 = classification_metrics(predict_logits(model, loader), data.split("test")[1])["top1"]
    with torch.no_grad():
        features = torch.cat([model.forward_with_features(x)[0] for x, _ in loader])
    return top1, features


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_format_gives_the_original_modules_top1_and_features(world: World, family: str, fmt: str) -> None:
    params = world.params(family, world.published[(fmt, family)])
    top1, features = _measure(params, world.data)
    original = world.trained[family]
    assert top1 == original.top1
    assert torch.allclose(features, original.features, atol=1e-4, rtol=1e-4)
    descriptor = json.loads((Path(params.paths.teacher) / DESCRIPTOR).read_text())
    assert descriptor["format"] == fmt.replace("ddp_", "")
    lineage = teacher.lineage(params)
    assert lineage["kdpipe.teacher_format"] == descriptor["format"]
    assert lineage["kdpipe.teacher_sha256"] == descriptor["sha256"]


def test_a_local_mlflow_model_folder_gives_the_original_modules_top1_and_features(world: World) -> None:
    import mlflow

    folder = world.root / "mlflow-pickle-folder"
    mlflow.pytorch.save_model(world.trained["timm"].net, folder, serialization_format="pickle", pip_requirements=PIP)
    params = world.params("timm", str(folder))
    top1, features = _measure(params, world.data)
    assert top1 == world.trained["timm"].top1
    assert torch.allclose(features, world.trained["timm"].features, atol=1e-4, rtol=1e-4)
    assert json.loads((Path(params.paths.teacher) / DESCRIPTOR).read_text())["format"] == "mlflow-pickle"


@pytest.mark.parametrize(("family", "fmt"), [("torchvision", "pt2"), ("timm", "torchscript")])
def test_srd_distils_from_a_foreign_teacher(world: World, family: str, fmt: str) -> None:
    from mlflow import MlflowClient

    params = world.params(family, world.published[(fmt, family)], method__name="srd", train__subset=120)
    teacher.resolve(params, world.data, make_runtime(params.runtime), on_epoch=lambda record: None)
    summary = steps.distill(params)
    assert summary["epochs"] == 1
    client = MlflowClient(world.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    wanted = f"tags.`kdpipe.teacher_source` = '{params.teacher.source}' and tags.`kdpipe.step` = 'distill'"
    (run,) = client.search_runs([experiment.experiment_id], wanted)
    assert run.data.tags["kdpipe.teacher_format"] == fmt
    assert run.data.tags["kdpipe.teacher_feature_layer"] not in ("none", "pooled")


def _refused(world: World, params: Params, match: str) -> None:
    """A teacher is stored first; the refused source must leave it as it was, with a one-line error."""
    stored = Path(params.paths.teacher)
    good = world.params("timm", world.published[("state_dict", "timm")], paths__teacher=str(stored))
    teacher.resolve(good, world.data, make_runtime(good.runtime), on_epoch=lambda record: None)
    before = _snapshot(stored)
    with pytest.raises(KdpipeError, match=match) as refused:
        teacher.resolve(params, world.data, make_runtime(params.runtime), on_epoch=lambda record: None)
    assert "\n" not in str(refused.value)
    assert _snapshot(stored) == before


def test_a_file_in_no_accepted_format_is_refused_naming_the_formats(world: World) -> None:
    junk = world.root / "weights.onnx"
    junk.write_bytes(b"\x08\x07not a torch file")
    _refused(world, world.params("timm", str(junk)), "not a format kdpipe reads; it accepts a kdpipe model file")


def test_a_feature_method_without_a_findable_feature_layer_is_refused_listing_candidates_and_kd_works(
    world: World,
) -> None:
    torch.manual_seed(0)
    no_head = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    path = _scripted(no_head, world.root / "no-linear-head.pt")
    for method in ("srd", "vkd"):
        params = world.params("timm", str(path), method__name=method)
        _refused(
            world,
            params,
            r"no feature layer in the teacher .*; set teacher.feature_layer to one of \[.*'3'.*\], "
            r"or a method on logits only \(dist, dkd, kd, lskd\)$",
        )
    kd = world.params("timm", str(path), method__name="kd", paths__teacher=params.paths.teacher)
    model, _, _ = teacher.resolve(kd, world.data, make_runtime(kd.runtime), on_epoch=lambda record: None)
    assert model.feature_dim == 0
    named = world.params("timm", str(path), method__name="srd", teacher__feature_layer="3")
    model, _, _ = teacher.resolve(named, world.data, make_runtime(named.runtime), on_epoch=lambda record: None)
    assert model.feature_dim == 10


def test_classes_that_differ_are_refused_naming_them(world: World) -> None:
    classes = [*world.data.classes[:-1], "Handbag"]
    params = world.params("timm", world.published[("pt2", "timm")], teacher__classes=classes)
    _refused(world, params, rf"the data's \['{world.data.classes[-1]}'\] are not among them; \['Handbag'\]")


def test_another_class_order_is_remapped(world: World) -> None:
    order = [*reversed(world.data.classes)]
    params = world.params("timm", world.published[("state_dict", "timm")], teacher__classes=order)
    top1, _ = _measure(params, world.data)
    test_x, test_y = world.data.split("test")
    with torch.no_grad():
        logits = world.trained["timm"].net(FAMILIES["timm"].feed(test_x, world.data))
    as_named = logits.flip(1)  # the team's output i is data class 9 - i
    assert top1 == float((as_named.argmax(1) == test_y).float().mean())


def test_the_wrong_channels_are_refused_before_training(world: World) -> None:
    params = world.params("torchvision", world.published[("state_dict", "torchvision")], teacher__preprocess={})
    _refused(world, params, "the teacher takes 3 input channels, the data has 1; set teacher.preprocess.channels: 3")


def test_a_teacher_built_for_another_input_size_is_refused_before_training(world: World) -> None:
    torch.manual_seed(0)
    flat32 = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))  # takes 32 x 32 images only
    path = _scripted(flat32, world.root / "flat32.pt")
    params = world.params("timm", str(path), method__name="kd")
    _refused(world, params, r"the teacher fails on the data's images, 1x28x28 after teacher.preprocess \(.*\); set")
    sized = world.params("timm", str(path), method__name="kd", teacher__preprocess={"image_size": 32})
    model, _, _ = teacher.resolve(sized, world.data, make_runtime(sized.runtime), on_epoch=lambda record: None)
    assert model(world.data.split("test")[0][:4].float()).shape == (4, 10)


def test_a_pickle_model_is_refused_without_trust_saying_why(world: World) -> None:
    params = world.params("timm", world.published[("mlflow-pickle", "timm")], teacher__trust_pickle=False)
    _refused(world, params, "pickle runs code when it is loaded; set teacher.trust_pickle: true only")


def _log_timm_teacher(world: World, classes_file: Path | None = None, tagged: list[str] | None = None) -> str:
    """The timm teacher logged again by plain MLflow code and registered, carrying its class names as a classes.txt
    among its extra files or as a ``classes`` tag (a JSON list) on the version: its ``runs:/`` URI for the first,
    its ``models:/<name>/1`` for the second."""
    import mlflow

    name = f"carried-{uuid.uuid4().hex[:6]}"
    mlflow.set_tracking_uri(world.uri)
    mlflow.set_experiment("team-training")
    with mlflow.start_run() as run:
        mlflow.pytorch.log_model(
            world.trained["timm"].net,
            name="model",
            serialization_format="pickle",
            registered_model_name=name,
            extra_files=[str(classes_file)] if classes_file else None,
            pip_requirements=PIP,
        )
    if tagged is not None:
        mlflow.MlflowClient(world.uri).set_model_version_tag(name, "1", "classes", json.dumps(tagged))
    return f"runs:/{run.info.run_id}/model" if tagged is None else f"models:/{name}/1"


def test_a_runs_uri_teacher_reads_its_classes_from_the_classes_txt_it_was_logged_with(world: World) -> None:
    reversed_classes = world.root / "classes.txt"
    reversed_classes.write_text("".join(f"{c}\n" for c in reversed(world.data.classes)))
    source = _log_timm_teacher(world, classes_file=reversed_classes)
    params = world.params("timm", source, teacher__classes=None, teacher__trust_pickle=True)
    top1, _ = _measure(params, world.data)
    test_x, test_y = world.data.split("test")
    with torch.no_grad():
        as_named = world.trained["timm"].net(FAMILIES["timm"].feed(test_x, world.data)).flip(1)
    assert top1 == float((as_named.argmax(1) == test_y).float().mean()) != world.trained["timm"].top1
    descriptor = json.loads((Path(params.paths.teacher) / DESCRIPTOR).read_text())
    assert descriptor["classes"] == [*reversed(world.data.classes)] and descriptor["version"] == source


def test_a_registered_teacher_reads_its_classes_from_its_version_tag(world: World) -> None:
    source = _log_timm_teacher(world, tagged=world.data.classes)
    params = world.params("timm", source, teacher__classes=None, teacher__trust_pickle=True)
    top1, _ = _measure(params, world.data)
    assert top1 == world.trained["timm"].top1


def test_a_foreign_teacher_with_no_class_names_anywhere_is_refused_asking_for_teacher_classes(world: World) -> None:
    params = world.params("timm", world.published[("pt2", "timm")], teacher__classes=None)
    _refused(world, params, r"the teacher records no class names; list them in its output order in teacher\.classes")


def test_kdpipe_run_distils_a_model_logged_by_plain_mlflow_pytorch(world: World, tmp_path: Path) -> None:
    """The README's example: ``-p teacher.source=models:/<name>/1 -p teacher.classes=classes.txt``."""
    source = world.published[("mlflow-pt2", "timm")]
    params = make_params_for(
        tmp_path,
        world.raw_root,
        **SMALL,
        tracking__uri=world.uri,
        tracking__experiment="byot",
        tracking__registered_model=f"byot-{uuid.uuid4().hex[:6]}",
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    (tmp_path / "classes.txt").write_text("".join(f"{c}\n" for c in world.data.classes))
    result = subprocess.run(
        [KDPIPE, "run", "-c", str(params_file), "-p", f"teacher.source={source}", "-p", "teacher.classes=classes.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((Path(params.paths.teacher) / "metrics.json").read_text())
    assert metrics["top1"] == world.trained["timm"].top1
    assert (Path(params.paths.teacher) / "mlflow_model" / "MLmodel").is_file()
    assert (Path(params.paths.student) / "model.pt").is_file()
