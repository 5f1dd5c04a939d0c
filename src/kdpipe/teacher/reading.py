"""How a loaded teacher is read and fed: its classes by name, its channels, its feature layer and its own input,
all checked on one batch of the data before anything is stored or trained.

Each mismatch that params cannot resolve here is one line naming what to set: classes that differ, a
channel count ``teacher.preprocess.channels`` does not fix, an input the teacher fails on, and, for a
method that distils features (srd, fitnet, vkd), a teacher without a feature layer kdpipe can find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdpipe.config import Params, TeacherConfig, feature_dim
from kdpipe.config.teacher import TeacherPreprocess
from kdpipe.data.prepared import PreparedData
from kdpipe.distill import FEATURE_METHODS, METHODS
from kdpipe.infra.errors import KdpipeError, TeacherMismatchError
from kdpipe.models import FeatureClassifier
from kdpipe.models.foreign import ForeignClassifier, LayerNotFoundError, candidate_layers, find_feature_layer
from kdpipe.models.teacher_input import InputSpec, TeacherInput
from kdpipe.teacher import classes as class_names
from kdpipe.teacher.formats import Loaded
from kdpipe.training.runtime import Runtime, make_loader

OWN, NONE = "pooled", "none"
PROBE_BATCH = 16


@dataclass(frozen=True, eq=False)
class Read:
    """The teacher as the student's steps use it, and what its descriptor records of the reading."""

    model: FeatureClassifier
    feature_layer: str
    classes: list[str]
    in_channels: int
    reading: dict[str, Any]


def input_spec(cfg: TeacherPreprocess, data: PreparedData) -> InputSpec:
    m = data.manifest
    return InputSpec(tuple(m["mean"]), tuple(m["std"]), cfg.image_size, cfg.resize, cfg.channels, cfg.normalize)


def _expected_channels(net: nn.Module) -> int | None:
    """The input channels of the first convolution (the first 4-D weight); None for a net without one."""
    return next((int(p.shape[1]) for p in net.parameters() if p.dim() == 4), None)


def _check_channels(net: nn.Module, cfg: TeacherPreprocess, data: PreparedData, source: str) -> int:
    fed = cfg.channels or data.in_channels
    expected = _expected_channels(net)
    if expected is not None and expected != fed:
        via = "" if fed == data.in_channels else f" (teacher.preprocess.channels: {fed})"
        raise TeacherMismatchError(
            f"teacher.source {source}: the teacher takes {expected} input channels, the data has "
            f"{data.in_channels}{via}; set teacher.preprocess.channels: {expected}"
        )
    return fed


def _inner(loaded: Loaded, layer: str | None, source: str) -> tuple[FeatureClassifier, str, bool]:
    """The teacher with its features: (model, feature layer as recorded, whether kdpipe chose the layer)."""
    if layer is None and loaded.own_features:
        assert isinstance(loaded.net, FeatureClassifier)
        return loaded.net, OWN, False
    chosen = layer or find_feature_layer(loaded.net)
    try:
        return ForeignClassifier(loaded.net, chosen), chosen or NONE, layer is None
    except LayerNotFoundError as exc:
        raise KdpipeError(
            f"teacher.feature_layer: {layer!r} is no layer of the teacher {source}; its last layers are "
            f"{exc.candidates[-8:]}"
        ) from None


def _probe(params: Params, data: PreparedData) -> torch.Tensor:
    """A few of the data's validation images, normalised as every loader hands them, on the CPU."""
    split = "val" if len(data.split("val")[1]) else "test"
    return next(iter(make_loader(data, split, PROBE_BATCH, params, Runtime(device=torch.device("cpu")))))[0]


_LOGIT_METHODS = ", ".join(m for m in METHODS.names() if m not in (*FEATURE_METHODS, "scratch"))


def _check_method(params: Params, data: PreparedData, teacher: FeatureClassifier, source: str) -> None:
    method = params.method.name
    if method not in FEATURE_METHODS:
        return
    if teacher.feature_dim == 0:
        inner = teacher.teacher if isinstance(teacher, TeacherInput) else teacher
        net = inner.net if isinstance(inner, ForeignClassifier) else inner
        raise KdpipeError(
            f"method.name {method} distils the teacher's features, but kdpipe finds no feature layer in the teacher "
            f"{source}; set teacher.feature_layer to one of {candidate_layers(net)}, "
            f"or a method on logits only ({_LOGIT_METHODS})"
        )
    projector = getattr(params.method.section(), "projector", None)  # vkd's is always orthogonal
    d_s = feature_dim(params.student.arch, int(data.manifest["shape"][-1]))
    if projector == "none" and d_s != teacher.feature_dim:
        raise KdpipeError(
            f"method.{method}.projector: 'none' needs equal feature sizes, but student {params.student.arch} has "
            f"{d_s} and the teacher {source} has {teacher.feature_dim}; use 'linear' or 'mlp'"
        )


def _fed(inner: FeatureClassifier, spec: InputSpec, order: list[int] | None) -> FeatureClassifier:
    return inner if spec.is_identity() and order is None else TeacherInput(inner, spec, order)


@torch.no_grad()
def read(params: Params, data: PreparedData, loaded: Loaded, source: str) -> Read:
    """``loaded`` wrapped for its classes, input and features, checked on a batch of the data."""
    cfg: TeacherConfig = params.teacher
    names = class_names.declared(cfg.classes, loaded.classes, source)
    order = class_names.order(names, data.classes, source)
    in_channels = _check_channels(loaded.net, cfg.preprocess, data, source)
    inner, layer, chosen = _inner(loaded, cfg.feature_layer, source)
    spec = input_spec(cfg.preprocess, data)
    model = _fed(inner, spec, order)
    x = _probe(params, data)
    prepared = model.prepare(x) if isinstance(model, TeacherInput) else x
    try:
        logits = inner.measure(prepared) if isinstance(inner, ForeignClassifier) else inner(prepared)
    except Exception as exc:  # whatever the foreign model raises on an input it was not built for
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise TeacherMismatchError(
            f"teacher.source {source}: the teacher fails on the data's images, {'x'.join(map(str, prepared.shape[1:]))}"
            f" after teacher.preprocess ({reason}); set teacher.preprocess to the input it was trained on"
        ) from None
    if logits.shape[1] != len(names):
        raise TeacherMismatchError(
            f"teacher.source {source}: the teacher outputs {logits.shape[1]} logits, but its classes list "
            f"{len(names)} names"
        )
    if chosen and isinstance(inner, ForeignClassifier) and not inner.ends_in_feature_layer(prepared):
        inner, layer = ForeignClassifier(inner.net, None), NONE  # its last linear layer does not make the logits
        model = _fed(inner, spec, order)
    model.feature_dim = inner.feature_dim
    _check_method(params, data, model, source)
    reading = {
        **({"preprocess": cfg.preprocess.model_dump(mode="json")} if not spec.is_identity() else {}),
        **({"order": order} if order is not None else {}),
    }
    return Read(model.eval(), layer, names, in_channels, reading)
