"""The validation's figures as MLflow logs them: one metric name per model, split (or operational set,
or deploy format) and figure, each with the dataset it was measured on."""

from __future__ import annotations

from typing import Any

from kdpipe.evaluation.validation import Measured
from kdpipe.tracking import datasets, tags

MODELS = ("student", "teacher", "champion")


def logged_metrics(m: Measured, manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any], tuple[str, str]]]:
    """(model, metrics, dataset) for MLflow: ``<model>_test_*``, ``<model>_<gate split>_*``,
    ``<model>_operational_<set>_*`` and each set's shift as ``operational_<set>_*`` (model ``"set"``);
    the dataset (name, digest) is the one the figures were measured on."""

    def prefixed(figures: dict[str, Any], prefix: str) -> dict[str, Any]:
        return {f"{prefix}{k}": v for k, v in figures.items()}

    out = []
    for split, by_model in (
        ("test", {"student": m.student, "teacher": m.teacher, "champion": m.champion}),
        (m.gate["split"], m.gate),
    ):
        dataset = (datasets.name(manifest, split), datasets.digest(manifest))
        out += [
            (who, prefixed(by_model[who], tags.split_prefix(who, split)), dataset)
            for who in MODELS
            if by_model.get(who)
        ]
    for name, f in m.operational.items():
        split, dataset = (
            tags.operational_split(name),
            (datasets.operational_name(name), f["sha256"][: datasets.DIGEST_CHARS]),
        )
        out += [(who, prefixed(f[who], tags.split_prefix(who, split)), dataset) for who in MODELS if f.get(who)]
        out.append(("set", prefixed(f["shift"], f"{split}_"), dataset))
    if m.deployment:
        d, gate = m.deployment, (datasets.name(manifest, m.gate["split"]), datasets.digest(manifest))
        out += [
            (who, prefixed(figures, tags.cost_prefix(who, fmt)), gate)
            for who, by_format in d.cost.items()
            for fmt, figures in by_format.items()
        ]
        exported = {"student_openvino": ("student", "openvino")}  # parity is keyed by model, OpenVINO's apart
        out += [
            (who, prefixed(figures, tags.cost_prefix(who, fmt)), gate)
            for key, figures in d.parity.items()
            for who, fmt in [exported.get(key, (key, "onnx"))]
        ]
        out.append(("student", {f"{tags.cost_prefix('student', 'onnx_int8')}top1_drop": d.int8["drop"]}, gate))
        if d.openvino_int8:
            drop = {f"{tags.cost_prefix('student', 'openvino_int8')}top1_drop": d.openvino_int8["drop"]}
            out.append(("student", drop, gate))
    return out
