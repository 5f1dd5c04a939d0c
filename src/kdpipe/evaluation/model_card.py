"""The model card of a registered student, as JSON and Markdown: what a deployer and a reviewer read first.

Built from what validate measured (``metrics.json``: :class:`ValidationMetrics`, and ``details.json``), the
prepared data's manifest, the version's lineage tags and promote's decision, and nothing else, so that every
figure in it is the one validate wrote (a test holds the card to those files). It says:

1. what the model is and where it came from (architecture, method, teacher, data, code);
2. the training data (splits, classes, sha256) and the transfer set the student learnt from;
3. accuracy: clean on the test split and corrupted on the gate split with the teacher's beside it, each
   operational set, and per class on the test split, the classes where it trails the teacher most first;
4. the cost table per format, as validate measured it;
5. the gate's decision and every check it made;
6. the known limits: operational sets under their threshold, int8 drops and int8 not offered, figures not
   measured.
"""

from __future__ import annotations

import json
from typing import Any

from kdpipe.evaluation.report import FORMAT_LABELS
from kdpipe.evaluation.validation_metrics import ValidationMetrics
from kdpipe.promotion.records import PromotionRecord
from kdpipe.tracking import tags

CARD_MD, CARD_JSON = "model_card.md", "model_card.json"
LINEAGE = (
    tags.VERSION,
    tags.GIT_COMMIT,
    tags.PIPELINE_RUN_ID,
    tags.DATA_SHA256,
    tags.SPLIT_FINGERPRINT,
    tags.TEACHER_SOURCE,
    tags.TEACHER_VERSION,
    tags.TEACHER_ARCH,
    tags.TEACHER_FORMAT,
    tags.TEACHER_SHA256,
    tags.MODEL_SHA256,
)


def _per_class(classes: list[str], student: dict[str, Any], teacher: dict[str, Any]) -> list[dict[str, Any]]:
    """Each class's test accuracy, student and teacher (``details.json``'s figures), the largest shortfall
    first."""
    s, t = student.get("per_class_accuracy"), teacher.get("per_class_accuracy")
    if not s or not t:
        return []
    rows = [{"class": c, "student": s[i], "teacher": t[i], "gap": t[i] - s[i]} for i, c in enumerate(classes)]
    return sorted(rows, key=lambda r: -r["gap"])


def _int8(deployment: dict[str, Any]) -> dict[str, Any]:
    return {
        runtime: {k: verdict[k] for k in ("split", "fp32_top1", "int8_top1", "drop", "offered", "reason")}
        for runtime, verdict in (("onnx", deployment.get("int8")), ("openvino", deployment.get("openvino_int8")))
        if verdict
    }


def build(
    name: str,
    version: str,
    version_tags: dict[str, str],
    manifest: dict[str, Any],
    transfer_images: int,
    metrics: ValidationMetrics,
    details: dict[str, Any],
    promotion: PromotionRecord,
) -> dict[str, Any]:
    """The card as JSON from ``metrics`` and ``details`` (``details.json``: the per-class figures); see the module
    docstring for what it holds, in order."""
    gate, deployment = metrics.gate, metrics.deployment or {}
    failed_sets = [r for r in promotion.reasons if "operational set" in r]
    return {
        "model": {
            "registered_model": name,
            "version": version,
            "arch": version_tags.get(tags.STUDENT_ARCH),
            "method": version_tags.get(tags.METHOD),
            "parameters": metrics.student.get("parameters"),
            "size_bytes": metrics.student.get("size_bytes"),
            "classes": list(manifest["classes"]),
            "input": {
                "shape": [-1, *manifest["shape"]],
                "range": "[0, 1]",
                "mean": manifest["mean"],
                "std": manifest["std"],
            },
        },
        "lineage": {key: version_tags[key] for key in LINEAGE if key in version_tags},
        "data": {
            "source": manifest.get("source"),
            "sha256": manifest["sha256"],
            "splits": manifest.get("splits"),
            "classes": len(manifest["classes"]),
        },
        "transfer_set": {"split": "train", "images": transfer_images},
        "accuracy": {
            "test": {who: metrics.of(who)["top1"] for who in ("student", "teacher", "champion") if metrics.of(who)},
            "gate": {
                "split": gate.split,
                **{
                    who: {k: f[k] for k in ("top1", "corrupted_top1") if k in f}
                    for who in ("student", "teacher", "champion")
                    if (f := gate.of(who))
                },
            },
            "corruptions": metrics.corruptions,
            "operational": {
                set_name: {"images": f.num_samples, "student": f.student["top1"], "teacher": f.teacher["top1"]}
                for set_name, f in metrics.operational.items()
            },
            "per_class_test": _per_class(list(manifest["classes"]), details["student"], details["teacher"]),
        },
        "cost": {
            "deploy_format": deployment.get("deploy_format"),
            "threads": deployment.get("threads"),
            "by_model": deployment.get("cost", {}),
        },
        "gate": {
            "validation_passed": metrics.passed,
            "decision": "champion" if promotion.promoted else "challenger",
            "compared_with": promotion.gate.compared_with if promotion.gate else None,
            "checks": list(promotion.gate.checks) if promotion.gate else [],
        },
        "limits": {
            "operational_sets_failed": failed_sets,
            "int8": _int8(deployment),
            "not_measured": deployment.get("not_measured", {}),
        },
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def render(card: dict[str, Any]) -> str:
    """The card as Markdown, every figure from the JSON."""
    model, acc, gate, limits = card["model"], card["accuracy"], card["gate"], card["limits"]
    lines = [
        f"# Model card: {model['registered_model']} v{model['version']}",
        "",
        f"`{model['arch']}` student distilled by **{model['method']}**, {model['parameters']:,} parameters, "
        f"{len(model['classes'])} classes; input float32 {model['input']['shape']} in [0, 1] (normalisation inside).",
        "",
        "## Lineage",
        "",
        *(f"- `{key}`: `{value}`" for key, value in card["lineage"].items()),
        "",
        "## Data",
        "",
        f"- training data: {card['data']['source']}, sha256 `{card['data']['sha256'][:12]}`, splits "
        f"{card['data']['splits']}",
        f"- transfer set: {card['transfer_set']['images']:,} images of the {card['transfer_set']['split']} split",
        "",
        "## Accuracy",
        "",
        "| | student | teacher |",
        "|---|---|---|",
        f"| test top-1 | {_pct(acc['test'].get('student'))} | {_pct(acc['test'].get('teacher'))} |",
        f"| {acc['gate']['split']} top-1 | {_pct(acc['gate']['student'].get('top1'))} | "
        f"{_pct(acc['gate']['teacher'].get('top1'))} |",
        f"| {acc['gate']['split']} corrupted top-1 | {_pct(acc['gate']['student'].get('corrupted_top1'))} | "
        f"{_pct(acc['gate']['teacher'].get('corrupted_top1'))} |",
        *(
            f"| operational `{set_name}` ({f['images']:,} images) | {_pct(f['student'])} | {_pct(f['teacher'])} |"
            for set_name, f in acc["operational"].items()
        ),
        "",
        f"Corruptions: {acc['corruptions']}.",
    ]
    if acc["per_class_test"]:
        lines += [
            "",
            "Per class on the test split, the largest shortfall against the teacher first:",
            "",
            "| class | student | teacher |",
            "|---|---|---|",
            *(f"| {r['class']} | {_pct(r['student'])} | {_pct(r['teacher'])} |" for r in acc["per_class_test"]),
        ]
    cost = card["cost"]
    if cost["by_model"]:
        lines += [
            "",
            f"## Cost ({cost['threads']} thread(s); the gate reads {cost['deploy_format']})",
            "",
            "| model | format | p50 ms | p95 ms | memory MB | size KB | top-1 |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {who} | {FORMAT_LABELS[fmt]} | {f['p50_ms']:.3f} | {f['p95_ms']:.3f} | {f['memory_mb']:.1f} | "
                f"{f['size_kb']:,.0f} | {_pct(f['top1'])} |"
                for who, by_format in cost["by_model"].items()
                for fmt, f in by_format.items()
            ),
        ]
    lines += [
        "",
        "## Gate",
        "",
        f"**{gate['decision']}** (validation {'passed' if gate['validation_passed'] else 'failed'}; compared with "
        f"{gate['compared_with'] or 'no champion'}):",
        "",
        *(f"- {check}" for check in gate["checks"]),
        "",
        "## Known limits",
        "",
        *(f"- {reason}" for reason in limits["operational_sets_failed"]),
        *(
            f"- {runtime} int8: top-1 {_pct(v['int8_top1'])} against fp32 {_pct(v['fp32_top1'])} on the "
            f"{v['split']} split (drop {v['drop']:+.4f}); "
            + ("offered" if v["offered"] else f"not offered: {v['reason']}")
            for runtime, v in limits["int8"].items()
        ),
        *(
            f"- {who} {FORMAT_LABELS[fmt]}: not measured ({why})"
            for who, by_format in limits["not_measured"].items()
            for fmt, why in by_format.items()
        ),
    ]
    return "\n".join(lines) + "\n"


def to_json(card: dict[str, Any]) -> str:
    """The text of ``model_card.json``."""
    return json.dumps(card, indent=2) + "\n"
