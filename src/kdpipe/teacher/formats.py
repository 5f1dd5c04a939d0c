"""The teacher file formats kdpipe reads, how each is recognised, and how each is loaded without running code.

- ``kdpipe``: a ``model.pt`` written by kdpipe (architecture name, classes, channels, weights);
- ``torchscript``: a ``torch.jit.save`` archive (read only: torch has deprecated TorchScript, kdpipe writes none);
- ``pt2``: a ``torch.export.save`` program;
- ``state_dict``: weights alone (plain, nested under ``state_dict`` or ``model``, DDP's ``module.`` prefix
  stripped) with ``teacher.arch`` naming the architecture: ``torchvision:<name>``, ``timm:<name>`` or kdpipe's;
- ``mlflow-pickle`` and ``mlflow-pt2``: an ``mlflow.pytorch`` model folder (:mod:`kdpipe.teacher.mlflow_models`
  fetches it).

Everything is read weights-only, except a pickled MLflow model, which runs code when loaded: only with
``teacher.trust_pickle: true``. A ``.pt2`` archive whose records are not all tensors and plain values counts
as pickle too.
"""

from __future__ import annotations

import importlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from kdpipe.infra.errors import ForeignFileError, KdpipeError
from kdpipe.infra.files import load_tensors
from kdpipe.models import TIMM_PREFIX, TORCHVISION_PREFIX, create_model
from kdpipe.models.file import load_model
from kdpipe.models.state_dict import unnested, unprefixed
from kdpipe.models.timm_wrap import TimmClassifier, timm_net

ACCEPTED = (
    "a kdpipe model file, a TorchScript file, a torch.export .pt2 program, a state dict with teacher.arch "
    "(torchvision:<name>, timm:<name> or kdpipe's), or an MLflow model URI (models:/, runs:/) of an "
    "mlflow.pytorch model"
)
TRUST_REASON = (
    "pickle runs code when it is loaded; set teacher.trust_pickle: true only for a model whose origin you trust"
)


@dataclass(frozen=True, eq=False)
class Loaded:
    """A teacher as read: its module, format, the payload to store as it came, and what it records of itself."""

    net: nn.Module
    format: str
    payload: Path
    arch: str = ""
    classes: list[str] | None = None
    own_features: bool = False
    """``net`` is a kdpipe FeatureClassifier with its own pooled features (kdpipe, timm)."""


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _quiet(load: Any, path: Path) -> Any:
    """``load(path)`` with torch's warnings (TorchScript's deprecation) kept off the terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(str(path))


def detect(path: Path) -> str:
    """``kdpipe``/``state_dict`` (both ``torch.save``: told apart by content), ``torchscript``, ``pt2`` or an MLflow
    folder's format; anything else is refused naming the formats kdpipe accepts."""
    if path.is_dir() and (path / "MLmodel").exists():
        return mlflow_format(path)
    if not path.is_file():
        raise KdpipeError(f"teacher.source: {path} not found")
    if path.stat().st_size == 0:
        raise ForeignFileError(f"teacher.source {path}: the file is empty")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        names = []
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "pt2"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch"
    raise ForeignFileError(f"teacher.source {path}: not a format kdpipe reads; it accepts {ACCEPTED}")


def mlflow_format(folder: Path) -> str:
    """``mlflow-pickle`` or ``mlflow-pt2`` of an MLflow model folder, by what its pytorch flavour saved."""
    flavors = (yaml.safe_load((folder / "MLmodel").read_text()) or {}).get("flavors", {})
    if "pytorch" not in flavors:
        raise ForeignFileError(
            f"{folder}: an MLflow model of flavour(s) {sorted(flavors)}, not mlflow.pytorch; kdpipe accepts {ACCEPTED}"
        )
    data = folder / flavors["pytorch"].get("model_data", "data")
    if (data / "model.pt2").exists():
        return "mlflow-pt2"
    if (data / "model.pth").exists():
        return "mlflow-pickle"
    raise ForeignFileError(f"{folder}: an mlflow.pytorch model without data/model.pth or data/model.pt2")


def _program(path: Path, trust_pickle: bool) -> nn.Module:
    if not trust_pickle:
        from mlflow.exceptions import MlflowException
        from mlflow.pytorch import _validate_pt2_archive_is_pickle_free

        try:
            _validate_pt2_archive_is_pickle_free(str(path))
        except MlflowException:
            raise ForeignFileError(
                f"{path}: the .pt2 archive holds pickled records, not only tensors; {TRUST_REASON}"
            ) from None
    try:
        return _quiet(torch.export.load, path).module()
    except Exception as exc:  # torch raises whatever its deserialiser meets
        raise ForeignFileError(f"{path}: not a torch.export program or corrupt ({_reason(exc)})") from None


def _script(path: Path) -> nn.Module:
    try:
        return _quiet(torch.jit.load, path).eval()
    except Exception as exc:  # torch.jit raises RuntimeError and its own types
        raise ForeignFileError(f"{path}: not a TorchScript file or corrupt ({_reason(exc)})") from None


def _pickled(folder: Path, trust_pickle: bool) -> nn.Module:
    if not trust_pickle:
        raise ForeignFileError(f"{folder}: a pickle-format mlflow.pytorch model; {TRUST_REASON}")
    data = folder / "data"
    module_name = (data / "pickle_module_info.txt").read_text().strip() or "pickle"
    net = torch.load(
        data / "model.pth", map_location="cpu", weights_only=False, pickle_module=importlib.import_module(module_name)
    )
    if not isinstance(net, nn.Module):
        raise ForeignFileError(f"{folder}: its model.pth holds a {type(net).__name__}, not a torch module")
    return net.eval()


def unwrap_state_dict(blob: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict as training scripts save them: nested under ``state_dict`` or ``model``,
    ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) in front of every name."""
    blob = unnested(blob)
    if not isinstance(blob, dict) or not blob or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise ForeignFileError(f"teacher.source {path}: not a state dict of tensors; kdpipe accepts {ACCEPTED}")
    return unprefixed(blob)


def _from_state_dict(path: Path, state: dict[str, torch.Tensor], arch: str, image_size: int | None) -> Loaded:
    """Build ``arch`` for the shapes the weights have (classes: the last matrix's rows; channels: the first
    convolution's inputs) and load them strictly."""
    matrices = [v for v in state.values() if v.dim() == 2]
    kernels = [v for v in state.values() if v.dim() == 4]
    num_classes, channels = (matrices[-1].shape[0] if matrices else 0), (kernels[0].shape[1] if kernels else 3)
    if not num_classes:
        raise ForeignFileError(f"teacher.source {path}: a state dict without a linear head; kdpipe reads classifiers")
    try:
        if arch.startswith(TORCHVISION_PREFIX):
            import torchvision

            net: nn.Module = torchvision.models.get_model(
                arch[len(TORCHVISION_PREFIX) :], weights=None, num_classes=num_classes
            )
        elif arch.startswith(TIMM_PREFIX):
            net = timm_net(arch[len(TIMM_PREFIX) :], num_classes, channels, image_size)
        else:
            net = create_model(arch, num_classes, channels)
        net.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ForeignFileError(
            f"teacher.source {path}: the state dict does not fit teacher.arch {arch} ({_reason(exc)})"
        ) from None
    if arch.startswith(TIMM_PREFIX):
        net = TimmClassifier(net, image_size)
    own = not arch.startswith(TORCHVISION_PREFIX)
    return Loaded(net.eval(), "state_dict", path, arch=arch, own_features=own)


def load(path: Path, *, arch: str, image_size: int | None, trust_pickle: bool) -> Loaded:
    """The teacher in file (or MLflow folder) ``path``; ``arch`` names a state dict's architecture."""
    fmt = detect(path)
    if fmt == "mlflow-pickle":
        return Loaded(_pickled(path, trust_pickle), fmt, path)
    if fmt == "mlflow-pt2":
        return Loaded(_program(path / "data" / "model.pt2", trust_pickle), fmt, path)
    if fmt == "pt2":
        return Loaded(_program(path, trust_pickle), fmt, path)
    if fmt == "torchscript":
        return Loaded(_script(path), fmt, path)
    blob = load_tensors(path)
    if isinstance(blob, dict) and {"arch", "classes", "state_dict"} <= set(blob):
        model, meta = load_model(path)
        return Loaded(model, "kdpipe", path, arch=meta["arch"], classes=list(meta["classes"]), own_features=True)
    return _from_state_dict(path, unwrap_state_dict(blob, path), arch, image_size)
