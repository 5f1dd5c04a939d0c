"""The files validate and promote leave behind, byte for byte, from fixed inputs: decision.json,
metrics.json, details.json, report.md and promotion.json (with and without a registry).

``tests/golden/result_files`` holds what the code wrote for the same inputs before the results became
typed (commit 483d82c, where validate and promote passed dicts): the types change no file. Each type
also reads back what it wrote.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kdpipe import steps
from kdpipe.config import GateConfig, ValidateConfig, params_from_dict
from kdpipe.deploy.deployment_record import Deployment
from kdpipe.evaluation import validation
from kdpipe.evaluation.validation_metrics import ValidationMetrics
from kdpipe.infra.files import DECISION_FILE, DETAILS_FILE, METRICS_FILE, PROMOTION_FILE, REPORT_FILE
from kdpipe.promotion import moves
from kdpipe.promotion.champion import ChampionScore
from kdpipe.promotion.decision import Decision
from kdpipe.promotion.gate import Scores, Thresholds
from kdpipe.tracking import registry
from kdpipe.tracking.tags import DATA_SHA256, MODEL_SHA256

GOLDEN = Path(__file__).parent / "golden" / "result_files"
DATA = "d" * 64
STUDENT_BYTES = b"the student"
MODEL_SHA = hashlib.sha256(STUDENT_BYTES).hexdigest()
DECIDED_AT = "2026-01-02T03:04:05+00:00"
STRICT = ValidateConfig(
    min_top1=0.9,
    max_teacher_gap=0.01,
    max_latency_ms=0.1,
    max_memory_mb=10.0,
    max_corruption_gap=0.05,
    deploy_format="onnx_int8",
    operational=({"name": "line4", "source": "x"},),
    operational_min_top1={"line4": 0.9},
)
LENIENT = ValidateConfig(min_top1=0.5, max_teacher_gap=0.5, max_latency_ms=None)


def _figures(top1: float, teacher: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "top1": top1,
        "top5": 0.987654321,
        "ece": 0.0312345678,
        "per_class_accuracy": [0.5, 0.75, 1.0],
        "confusion_matrix": [[5, 1, 0], [0, 6, 2], [1, 0, 7]],
        "num_samples": 22,
    }
    if not teacher:
        out["teacher_agreement"] = 0.9090909090909091
    return out


def _deployment(out: Path) -> Deployment:
    """Three small files standing in for the exports (their sha256 goes into metrics.json); int8 refused."""
    for name, text in (("student.onnx", b"fp32"), ("student_int8.onnx", b"int8"), ("teacher.onnx", b"t")):
        (out / name).write_bytes(text)
    cost = {"p50_ms": 0.25, "p95_ms": 0.5, "throughput": 12345.6, "memory_mb": 33.3, "size_kb": 12.0, "top1": 0.8}
    return Deployment(
        files={
            "student_onnx": out / "student.onnx",
            "student_int8_onnx": out / "student_int8.onnx",
            "teacher_onnx": out / "teacher.onnx",
        },
        parity={
            "student": {"top1_agreement": 1.0, "max_abs_logit_diff": 1.2e-6},
            "teacher": {"top1_agreement": 0.999, "max_abs_logit_diff": 3e-6},
        },
        int8={
            "split": "val",
            "calibration_images": 256,
            "int8_top1": 0.7,
            "fp32_top1": 0.8,
            "drop": 0.1,
            "offered": False,
            "reason": "int8 top-1 0.7000 trails fp32 0.8000 by 0.1000",
        },
        cost={
            "student": {"pytorch": cost, "onnx": cost, "onnx_int8": cost},
            "teacher": {"pytorch": cost, "onnx": cost},
        },
        deploy_format="onnx_int8",
        threads=1,
        batch_size=64,
    )


def _measured(out: Path, full: bool) -> validation.Measured:
    """``full``: a comparable champion, the corruption suite's figures (one NaN), an operational set and the
    export; otherwise none of them."""
    student = {**_figures(0.8181818181818182), "parameters": 1234, "size_bytes": 5678, "latency_ms_batch1": 0.123456}
    teacher = {
        **_figures(0.9090909090909091, True),
        "parameters": 98765,
        "size_bytes": 400000,
        "latency_ms_batch1": 1.5,
    }
    labels = torch.tensor([0, 1, 2] * 7 + [0])
    if not full:
        champ = ChampionScore(None, None, None, {}, "tracking is off: no registry to read a champion from")
        gate = {"split": "val", "champion": None, "teacher": {"top1": 0.9}, "student": {"top1": 0.7}}
        predictions = {"teacher": labels, "student": labels, "labels": labels, "split": "val"}
        return validation.Measured(
            student, teacher, None, labels, ["a", "b", "c"], champ, {}, "not measured", gate, predictions, {}, None
        )
    suite = {"corrupted_top1": 0.61, "mce": 1.2, "relative_mce": float("nan"), "robustness_retention": 0.93}
    suite["corruption_jpeg_s3_top1"] = 0.7
    tags = {"kdpipe.student_arch": "cnn8", "kdpipe.parameters": "1200.0", "kdpipe.latency_ms_batch1": "0.2"}
    champ = ChampionScore("3", DATA, torch.zeros(22, 3), tags, "v3 measured on this test split")
    champion = {**_figures(0.7727272727272727), "label": "v3", **champ.recorded()}
    gate: dict[str, Any] = {"split": "val", "champion": None}
    for who, top1 in (("teacher", 0.91), ("student", 0.8), ("champion", 0.75)):
        gate[who] = {**suite, "top1": top1}
    predictions = {"teacher": labels, "student": labels, "champion": labels, "labels": labels, "split": "val"}
    shift = {
        "input_mean_shift": 0.0712,
        "input_std_shift": -0.01,
        "teacher_confidence_shift": -0.05,
        "student_confidence_shift": -0.07,
        "champion_confidence_shift": -0.08,
        "disagreement": 0.125,
    }
    line4 = {"source": "/field/line4", "kind": "imagefolder", "num_samples": 22, "sha256": "e" * 64}
    line4 |= {"teacher": _figures(0.85, True), "student": _figures(0.8), "champion": _figures(0.7), "shift": shift}
    return validation.Measured(
        student,
        teacher,
        champion,
        labels,
        ["a", "b", "c"],
        champ,
        {},
        "fast: 15 corruptions",
        gate,
        predictions,
        {"line4": line4},
        _deployment(out),
    )


@pytest.mark.parametrize(("case", "cfg"), [("full", STRICT), ("bare", LENIENT)])
def test_validation_files_are_what_they_were_and_read_back(tmp_path: Path, case: str, cfg: ValidateConfig) -> None:
    m = _measured(tmp_path, case == "full")
    decision = validation.decide(m, cfg, data_sha256=DATA, model_sha256=MODEL_SHA)
    validation.write(tmp_path, m, decision, lineage={"kdpipe.teacher_arch": "cnn16"}, student_arch="cnn8")
    for name in (DECISION_FILE, METRICS_FILE, DETAILS_FILE, REPORT_FILE):
        assert (tmp_path / name).read_bytes() == (GOLDEN / case / name).read_bytes(), name
    assert decision.passed is (case == "bare") and len(decision.reasons) == (6 if case == "full" else 0)
    assert Decision.from_dict(json.loads((tmp_path / DECISION_FILE).read_text())) == decision
    metrics_text = (tmp_path / METRICS_FILE).read_text()
    again = ValidationMetrics.from_dict(json.loads(metrics_text)).to_dict()  # NaN != NaN: compare the JSON
    assert json.dumps(again, indent=2, sort_keys=True) + "\n" == metrics_text
    summary = validation.summary(m, decision)
    assert json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n" == metrics_text


@pytest.mark.parametrize(("case", "src"), [("offline_failed", "full"), ("offline_passed", "bare")])
def test_promotion_json_without_a_registry_is_what_it_was(tmp_path: Path, case: str, src: str) -> None:
    dirs = ("prepared", "teacher", "student", "checkpoints", "validation", "promotion", "teacher_cache")
    params = params_from_dict({"tracking": {"enabled": False}, "paths": {k: str(tmp_path / k) for k in dirs}})
    for folder, name, content in (
        (params.paths.validation, DECISION_FILE, (GOLDEN / src / DECISION_FILE).read_bytes()),
        (params.paths.student, "model.pt", STUDENT_BYTES),
    ):
        Path(folder).mkdir(parents=True)
        (Path(folder) / name).write_bytes(content)
    dry = steps.promote(params, dry_run=True)
    assert dry.dry_run and not (Path(params.paths.promotion) / PROMOTION_FILE).exists()
    record = steps.promote(params)
    written = (Path(params.paths.promotion) / PROMOTION_FILE).read_bytes()
    assert written == (GOLDEN / "promotion" / f"{case}.json").read_bytes()
    assert record.to_json().encode() == written and record.gate is None and not record.promoted
    assert record.would_promote is (src == "bare") and dry.would_promote is record.would_promote


def test_promotion_json_with_a_registry_is_what_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local SQLite registry: the first student becomes champion; a dry run, a worse one, one that failed
    validation, a better one (McNemar and the robustness check on), the same one again."""
    monkeypatch.setattr(moves, "_now", lambda: DECIDED_AT)
    client, name = registry.client(f"sqlite:///{tmp_path / 'registry.db'}"), "golden-students"
    labels = torch.tensor([0, 1] * 50)

    def scores(top1: float) -> Scores:
        right = torch.arange(100) < round(top1 * 100)
        return Scores.from_predictions(torch.where(right, labels, 1 - labels), labels, DATA, 0.5)

    def candidate(top1: float, model: str, passed: bool = True) -> moves.Candidate:
        reasons = () if passed else ("top-1 0.1000 is below validate.min_top1 0.5000",)
        source = tmp_path / f"model-{model}-{len(list(tmp_path.glob('model-*')))}"
        source.mkdir()
        (source / "MLmodel").write_text("artifact_path: model\n")
        tags = {MODEL_SHA256: model * 64, DATA_SHA256: DATA, "kdpipe.top1": str(top1)}
        return moves.Candidate(
            f"file://{source}", None, scores(top1), Thresholds(passed, reasons, top1, 0.01, 1.0, None, "pytorch"), tags
        )

    gate = GateConfig(significance=0.05, max_robustness_drop=0.1)
    for case, cand, dry_run in (
        ("first", candidate(0.8, "1"), False),
        ("dry_better", candidate(0.95, "2"), True),
        ("worse", candidate(0.7, "3"), False),
        ("failed", candidate(0.9, "4", passed=False), False),
        ("better", candidate(0.97, "5"), False),
        ("again", candidate(0.97, "5"), False),
    ):
        record = moves.promote_candidate(
            client, name, cand, gate, lambda mv: scores(float(mv.tags["kdpipe.top1"])), dry_run=dry_run
        )
        assert record.to_json() == (GOLDEN / "promotion" / f"registry_{case}.json").read_text(), case
    rolled = moves.rollback(client, name)
    assert (rolled.rolled_back, rolled.from_version, rolled.to_version) == (True, "4", "1")
    assert rolled.message == f"champion of {name} moved from v4 back to v1"
