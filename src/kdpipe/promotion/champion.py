"""The serving champion, measured on this run's splits so the gate compares like with like.

The champion is loaded from the registry exactly as users get it (the exported serving module, float
images in [0, 1]) and scored on the prepared test images (reported) and gate split (decided on). On
the data it was validated on that is a re-run of its own validation; on new data it is re-measured on
today's splits when :func:`kdpipe.promotion.comparison.compare` allows it (the same classes, and today's
gate split proven free of its training images or ``gate.champion_on_new_data: rescore``), which its
version tags (data sha256, split fingerprint, classes) decide.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData, load_prepared
from kdpipe.infra.errors import KdpipeError
from kdpipe.models.serving import predict_unit_images
from kdpipe.promotion.comparison import Basis, compare
from kdpipe.promotion.gate import Scores
from kdpipe.promotion.moves import ChampionEvaluator, basis_from_tags
from kdpipe.tracking import registry, tags


@dataclass(frozen=True)
class ChampionScore:
    """The champion as the validation saw it (``data_sha256``: the data it was validated on); ``logits``, its
    logits on this test split, are None when it is not compared, ``note`` says why."""

    version: str | None
    data_sha256: str | None
    logits: torch.Tensor | None
    tags: dict[str, str]
    note: str
    module: torch.nn.Module | None = None  # the exported serving module (uint8 / 255 in, logits out)

    def recorded(self) -> dict[str, Any]:
        """What the champion's own validation recorded in its version tags: architecture, size, speed."""
        out: dict[str, Any] = {"arch": self.tags.get(tags.STUDENT_ARCH, "?")}
        for key in ("parameters", "size_bytes"):
            if tags.recorded_metric(key) in self.tags:
                out[key] = int(float(self.tags[tags.recorded_metric(key)]))
        if tags.recorded_metric("latency_ms_batch1") in self.tags:
            out["latency_ms_batch1"] = float(self.tags[tags.recorded_metric("latency_ms_batch1")])
        return out


def serving_module(params: Params, mlflow_client: Any, version: str) -> torch.nn.Module:
    """A registered version's exported serving module, loaded into memory."""
    with tempfile.TemporaryDirectory() as tmp:
        return registry.load_serving(mlflow_client, params.tracking.registered_model, version, Path(tmp))


def score_version(params: Params, mlflow_client: Any, version: str, data: PreparedData, split: str) -> torch.Tensor:
    """Logits of a registered version on one of ``data``'s splits, through its exported serving module."""
    module = serving_module(params, mlflow_client, version)
    return predict_unit_images(module, data.eval_split(split)[0], params.runtime.eval_batch_size)


def validated_on(data: PreparedData) -> Basis:
    """What a student validated on ``data`` was validated on, as the gate compares it."""
    return Basis(data.sha256, data.split_fingerprint, tuple(data.classes))


def measure(params: Params, data: PreparedData) -> ChampionScore:
    """Look up ``champion`` and score it on ``data``'s test split: on the data it was validated on, or on new data
    when rule 2 of :mod:`kdpipe.promotion.gate` allows it."""
    if not params.tracking.enabled:
        return ChampionScore(None, None, None, {}, "tracking is off: no registry to read a champion from")
    name = params.tracking.registered_model
    mlflow_client = registry.client(params.tracking.uri)
    mv = registry.version_by_alias(mlflow_client, name, registry.CHAMPION)
    if mv is None:
        return ChampionScore(None, None, None, {}, f"{name} has no champion yet")
    version, sha = str(mv.version), mv.tags.get(tags.DATA_SHA256)
    comparison = compare(version, basis_from_tags(mv.tags), validated_on(data), params.gate.champion_on_new_data)
    if comparison.refused is not None:
        return ChampionScore(version, sha, None, dict(mv.tags), comparison.refused)
    module = serving_module(params, mlflow_client, version)
    logits = predict_unit_images(module, data.eval_split("test")[0], params.runtime.eval_batch_size)
    note = (
        f"v{version} measured on this test split"
        if comparison.same_data
        else comparison.line(data.sha256, len(data.split(params.gate.split)[1]))
    )
    return ChampionScore(version, sha, logits, dict(mv.tags), note, module)


def evaluator(params: Params, validated: dict[str, Any], data_sha256: str) -> ChampionEvaluator:
    """The gate's champion scorer on the student's gate split: the validation's predictions when the champion is
    unchanged (on its own data or re-measured on today's), otherwise (it moved since) a fresh measurement on the
    prepared data the student was validated on."""
    name = params.tracking.registered_model

    def evaluate(mv: Any) -> Scores:
        labels = validated["labels"]
        if validated.get("split") != params.gate.split:
            raise KdpipeError(
                f"gate.split is {params.gate.split!r}, but the validation decided on "
                f"{validated.get('split')!r}; rerun validate"
            )
        if validated.get("champion_version") == str(mv.version) and "champion" in validated:
            return Scores.from_predictions(
                validated["champion"], labels, data_sha256, validated.get("champion_corrupted_top1")
            )
        data = load_prepared(params.paths.prepared, progress_mode=params.runtime.progress)
        if data.sha256 != data_sha256:
            raise KdpipeError(
                f"{params.paths.prepared}: the prepared data ({data.sha256[:12]}) changed since validation "
                f"({data_sha256[:12]}), and champion v{mv.version} of {name} must be measured on the student's data; "
                "rerun validate"
            )
        logits = score_version(params, registry.client(params.tracking.uri), str(mv.version), data, params.gate.split)
        return Scores.from_predictions(logits.argmax(1), labels, data_sha256)

    return evaluate
