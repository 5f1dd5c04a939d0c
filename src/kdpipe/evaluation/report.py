"""The Markdown report of a validation: teacher, student and current champion side by side."""

from __future__ import annotations

from typing import Any

from kdpipe.promotion.decision import Decision

_ROWS = (
    ("test top-1", "top1", "{:.2%}"),
    ("test top-5", "top5", "{:.2%}"),
    ("calibration error (ECE)", "ece", "{:.4f}"),
    ("agreement with the teacher", "teacher_agreement", "{:.2%}"),
    ("parameters", "parameters", "{:,}"),
    ("size (bytes)", "size_bytes", "{:,}"),
    ("latency per image, batch 1 (ms)", "latency_ms_batch1", "{:.2f}"),
)
_GATE_ROWS = (
    ("top-1", "top1", "{:.2%}"),
    ("mean corrupted top-1", "corrupted_top1", "{:.2%}"),
    ("mCE (teacher = 1)", "mce", "{:.3f}"),
    ("relative mCE (teacher = 1)", "relative_mce", "{:.3f}"),
    ("robustness retention (teacher = 1)", "robustness_retention", "{:.3f}"),
)


def _cell(metrics: dict[str, Any] | None, key: str, fmt: str) -> str:
    if not metrics or metrics.get(key) is None:
        return "-"
    try:
        return fmt.format(metrics[key])
    except (TypeError, ValueError):
        return str(metrics[key])


def _operational(sets: dict[str, dict[str, Any]]) -> list[str]:
    """One row per operational set: each model's top-1 there and how far the set moved from the training data."""
    if not sets:
        return []
    lines = [
        "",
        "## Operational data",
        "",
        "Input shift: the set's pixel mean / std minus the training split's. Confidence shift: mean max-softmax "
        "on the set minus on held-out data of the training distribution (the gate split).",
        "",
        "| set | images | teacher top-1 | student top-1 | champion top-1 | student ECE | teacher-student "
        "disagreement | input mean / std shift | confidence shift, teacher / student |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in sets.items():
        s = f["shift"]
        lines.append(
            f"| {name} | {f['num_samples']:,} | {_cell(f['teacher'], 'top1', '{:.2%}')} | "
            f"{_cell(f['student'], 'top1', '{:.2%}')} | {_cell(f.get('champion'), 'top1', '{:.2%}')} | "
            f"{_cell(f['student'], 'ece', '{:.4f}')} | {s['disagreement']:.2%} | "
            f"{s['input_mean_shift']:+.3f} / {s['input_std_shift']:+.3f} | "
            f"{s['teacher_confidence_shift']:+.3f} / {s['student_confidence_shift']:+.3f} |"
        )
    lines += ["", *(f"- {name}: {f['kind']} `{f['source']}`, sha256 {f['sha256'][:12]}" for name, f in sets.items())]
    return lines


FORMAT_LABELS = {
    "pytorch": "eager PyTorch",
    "onnx": "ONNX fp32",
    "onnx_int8": "ONNX int8 (static QDQ)",
    "openvino": "OpenVINO fp32",
    "openvino_int8": "OpenVINO int8 (NNCF)",
}


def cost_rows(deployment: dict[str, Any]) -> list[list[str]]:
    """The cost table's rows (header first): one per model and format, as the report and `kdpipe run` print it; a
    figure validate could not measure (a teacher's: :func:`not_measured_lines` says why) reads ``not measured``."""
    rows = [
        [
            "model",
            "format",
            "p50 ms",
            "p95 ms",
            f"images/s at batch {deployment['batch_size']}",
            "memory MB",
            "size KB",
            f"{deployment['int8']['split']} top-1",
        ]
    ]
    for who, by_format in deployment["cost"].items():
        rows += [
            [
                who,
                FORMAT_LABELS[fmt],
                f"{f['p50_ms']:.3f}",
                f"{f['p95_ms']:.3f}",
                f"{f['throughput']:,.0f}",
                f"{f['memory_mb']:.1f}",
                f"{f['size_kb']:,.0f}",
                f"{f['top1']:.2%}",
            ]
            for fmt, f in by_format.items()
        ]
        rows += [
            [who, FORMAT_LABELS[fmt], "not measured", *["-"] * 5]
            for fmt in deployment.get("not_measured", {}).get(who, {})
        ]
    return rows


def not_measured_lines(deployment: dict[str, Any]) -> list[str]:
    """One line per figure missing from the cost table, with why."""
    return [
        f"{who} {FORMAT_LABELS[fmt]}: not measured ({reason})"
        for who, by_format in deployment.get("not_measured", {}).items()
        for fmt, reason in by_format.items()
    ]


def spread_line(deployment: dict[str, Any]) -> str:
    """How the gate's latency was settled (:mod:`kdpipe_probe.settle`): probes and the spread of their p50;
    empty for files written before it."""
    f = deployment["cost"]["student"][deployment["deploy_format"]]
    if "probes" not in f:
        return ""
    return (
        f"the gate's latency (student, {FORMAT_LABELS[deployment['deploy_format']]}) is the median of "
        f"{f['probes']:.0f} probes; their p50 ranged {f['p50_ms_min']:.3f}-{f['p50_ms_max']:.3f} ms"
    )


def device_line(deployment: dict[str, Any]) -> str:
    """How the latency gate's figure was carried to the target device (:mod:`kdpipe.deploy.device_profile`);
    empty without ``validate.device_profile``."""
    p = deployment.get("device_profile")
    if not p:
        return ""
    pod = deployment["cost"]["student"][deployment["deploy_format"]]["p50_ms"]
    return (
        f"the latency gate reads {p['device']}: {pod:.3f} ms here x {p['ratio']:.2f} = {pod * p['ratio']:.3f} ms "
        f"({p['device']} ran {p['reference']} in {p['device_p50_ms']:.3f} ms at {p['device_threads']} thread(s), "
        f"probed {p['device_measured_at']}; this pod in {p['pod_p50_ms']:.3f} ms)"
    )


def _openvino_lines(d: dict[str, Any]) -> list[str]:
    """OpenVINO's parity and int8 verdict, when validate made it."""
    int8, parity = d.get("openvino_int8"), d["parity"].get("student_openvino")
    if not int8 or not parity:
        return []
    offered = "offered for deployment" if int8["offered"] else f"**not offered for deployment**: {int8['reason']}"
    return [
        f"- OpenVINO fp32 parity with eager: {parity['top1_agreement']:.2%} top-1 agreement, max |Δlogit| "
        f"{parity['max_abs_logit_diff']:.1e}",
        f"- OpenVINO int8 (NNCF, same calibration images): top-1 {int8['int8_top1']:.2%} against fp32 "
        f"{int8['fp32_top1']:.2%} (drop {int8['drop']:+.4f}); {offered}",
    ]


def _deployment(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return ["", "Inference cost: not measured (export.enabled: false)"]
    head, *rows = cost_rows(d)
    int8, parity = d["int8"], d["parity"]["student"]
    offered = "offered for deployment" if int8["offered"] else f"**not offered for deployment**: {int8['reason']}"
    return [
        "",
        "## Inference cost",
        "",
        f"Each model and format in a fresh process at {d['threads']} thread(s): batch-1 latency, throughput at "
        "a batch, memory (the RSS high-water mark of loading the model and running one batch, minus the RSS "
        f"before loading) and file size. The thresholds read the student in **{FORMAT_LABELS[d['deploy_format']]}** "
        "(`validate.deploy_format`).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"- ONNX fp32 parity with eager on the {int8['split']} split: {parity['top1_agreement']:.2%} top-1 agreement, "
        f"max |Δlogit| {parity['max_abs_logit_diff']:.1e}",
        f"- int8 (calibrated on {int8['calibration_images']:,} transfer-set images): top-1 {int8['int8_top1']:.2%} "
        f"against fp32 {int8['fp32_top1']:.2%} (drop {int8['drop']:+.4f}); {offered}",
        *_openvino_lines(d),
        *(f"- {line}" for line in [spread_line(d), device_line(d), *not_measured_lines(d)] if line),
    ]


def render(
    teacher: dict[str, Any],
    student: dict[str, Any],
    champion: dict[str, Any] | None,
    decision: Decision,
    lineage: dict[str, str],
    champion_note: str,
    corruption_note: str = "",
    gate: dict[str, Any] | None = None,
    operational: dict[str, dict[str, Any]] | None = None,
    deployment: dict[str, Any] | None = None,
) -> str:
    """``champion`` holds the champion's metrics on this test split, or None (``champion_note`` says why);
    ``gate`` the figures on ``gate.split`` that every decision reads; ``corruption_note`` how the
    corrupted ones were measured; ``operational`` each operational set's figures and shift; ``deployment``
    the exported formats' parity and inference cost."""
    heads = [
        f"teacher ({teacher.get('arch', '?')})",
        f"student ({student.get('arch', '?')})",
        f"champion ({champion['label']})" if champion else "champion",
    ]
    lines = ["# kdpipe validation report", "", f"| | {' | '.join(heads)} |", "|---|---|---|---|"]
    for label, key, fmt in _ROWS:
        cells = [_cell(m, key, fmt) for m in (teacher, student, champion)]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    verdict = "passed" if decision.passed else "failed"
    lines += ["", f"Champion: {champion_note}"]
    if gate:
        lines += [
            "",
            f"## Decided on the {gate['split']} split",
            "",
            "The thresholds and the promotion gate read these figures; the test split above is reported only.",
            "",
            f"| | {' | '.join(heads)} |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {label} | {' | '.join(_cell(gate.get(who), key, fmt) for who in ('teacher', 'student', 'champion'))} |"
            for label, key, fmt in _GATE_ROWS
        ]
    lines += [
        *(["", f"Corruptions: {corruption_note}"] if corruption_note else []),
        *_operational(operational or {}),
        *_deployment(deployment),
        "",
        f"## Validation thresholds: {verdict}",
        "",
    ]
    lines += [f"- {reason}" for reason in decision.reasons] or ["- every threshold in `validate.*` holds"]
    lines += ["", "## Lineage", "", "| tag | value |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in sorted(lineage.items())]
    return "\n".join(lines) + "\n"
