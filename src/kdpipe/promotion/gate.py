"""The promotion rule as pure functions: thresholds, scores, McNemar and the decision. No MLflow here.

A validated student may serve only when every check holds:

1. the thresholds of ``validate.*`` pass (minimum top-1, maximum gap to the teacher, latency);
2. the champion is measured on the student's data (:mod:`kdpipe.promotion.comparison`): on the data it was
   validated on (sha256), its predictions there; on new data, re-measured on today's gate split, which an
   unchanged stable split (the same fingerprint) proves free of the images it trained on. A changed class
   set is never compared; a split not proven disjoint is compared only with
   ``gate.champion_on_new_data: rescore`` (that bias can only favour the champion), and the line says so;
3. its top-1 beats the champion's by more than zero and by at least ``gate.min_improvement``
   (a tie never moves the champion, so rerunning the same params on the same data keeps it);
4. where ``gate.significance`` is set, the exact McNemar test on the two models' paired
   predictions gives p < significance with the student ahead on the discordant pairs;
5. where ``gate.max_robustness_drop`` is set, its mean corrupted top-1 is at most that far below the
   champion's, even when it wins on clean data;
6. where ``gate.max_class_drop`` is set, no class's recall falls further than that below the
   champion's (the per-slice check mature registries offer).

Every figure is measured on ``gate.split`` (default val: held out from training, never used to pick a
model), never on the test split, which is only reported: picking the best of many nightly candidates
on one fixed test split would be selection on it. With no champion yet, passing the thresholds is
enough. :mod:`kdpipe.promotion.moves` applies the decision to the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from kdpipe.config import GateConfig, ValidateConfig
from kdpipe.promotion.comparison import Comparison


@dataclass(frozen=True)
class Thresholds:
    """Check 1: whether every threshold in ``validate`` holds, each failure's reason, and the student's figures
    they read (top-1 and the gap to the teacher on the gate split, latency and memory in the deploy format; the
    latency as estimated on the device ``latency_on`` when ``validate.device_profile`` names one)."""

    passed: bool
    reasons: tuple[str, ...]
    top1: float
    teacher_gap: float
    latency_ms: float
    memory_mb: float | None
    deploy_format: str
    latency_on: str | None = None


def decide_thresholds(
    student: dict[str, Any],
    teacher: dict[str, Any],
    cfg: ValidateConfig,
    operational_top1: dict[str, float] | None = None,
) -> Thresholds:
    """Pass only when every threshold in ``validate`` holds; each failure gives its reason.

    ``operational_top1``: the student's top-1 on each operational set measured, by set name.
    """
    reasons = []
    if student["top1"] < cfg.min_top1:
        reasons.append(f"top-1 {student['top1']:.4f} is below validate.min_top1 {cfg.min_top1:.4f}")
    gap = teacher["top1"] - student["top1"]
    if cfg.max_teacher_gap is not None and gap > cfg.max_teacher_gap:
        reasons.append(f"gap to the teacher {gap:.4f} exceeds validate.max_teacher_gap {cfg.max_teacher_gap:.4f}")
    if cfg.max_corruption_gap is not None and "corrupted_top1" not in student:
        reasons.append("validate.max_corruption_gap is set, but validate.corruptions is none: nothing to check it on")
    elif cfg.max_corruption_gap is not None:
        corrupted_gap = teacher["corrupted_top1"] - student["corrupted_top1"]
        if corrupted_gap > cfg.max_corruption_gap:
            reasons.append(
                f"mean corrupted top-1 {student['corrupted_top1']:.4f} trails the teacher's "
                f"{teacher['corrupted_top1']:.4f} by {corrupted_gap:.4f}, over validate.max_corruption_gap "
                f"{cfg.max_corruption_gap:.4f}"
            )
    for name, limit in cfg.operational_min_top1.items():
        top1 = (operational_top1 or {}).get(name)
        if top1 is None:
            reasons.append(
                f"validate.operational_min_top1.{name} is set, but operational set '{name}' was not measured"
            )
        elif top1 < limit:
            reasons.append(
                f"top-1 {top1:.4f} on operational set '{name}' is below validate.operational_min_top1.{name} "
                f"{limit:.4f}"
            )
    latency, memory, fmt, on = (
        student["latency_ms_batch1"],
        student.get("memory_mb"),
        student.get("deploy_format", "pytorch"),
        student.get("latency_on"),
    )
    if cfg.max_latency_ms is not None and latency > cfg.max_latency_ms:
        where = f", estimated on {on}" if on else ""
        reasons.append(
            f"latency {latency:.2f} ms ({fmt}{where}) exceeds validate.max_latency_ms {cfg.max_latency_ms:.2f}"
        )
    if cfg.max_memory_mb is not None and memory is None:
        reasons.append("validate.max_memory_mb is set, but memory was not measured (export.enabled is false)")
    elif cfg.max_memory_mb is not None and memory > cfg.max_memory_mb:
        reasons.append(f"memory {memory:.1f} MB ({fmt}) exceeds validate.max_memory_mb {cfg.max_memory_mb:.1f}")
    if student.get("deploy_refused"):
        reasons.append(f"validate.deploy_format {fmt} is not offered: {student['deploy_refused']}")
    return Thresholds(not reasons, tuple(reasons), student["top1"], gap, latency, memory, fmt, on)


@dataclass(frozen=True)
class Scores:
    """One model's predictions on a prepared test split: what the gate compares."""

    top1: float
    correct: torch.Tensor
    data_sha256: str
    labels: torch.Tensor | None = None  # for the per-class check
    corrupted_top1: float | None = None  # mean top-1 on the corruption suite, when validate measured it

    @classmethod
    def from_predictions(
        cls, predictions: torch.Tensor, labels: torch.Tensor, data_sha256: str, corrupted_top1: float | None = None
    ) -> Scores:
        correct = predictions.cpu() == labels.cpu()
        return cls(float(correct.float().mean()), correct, data_sha256, labels.cpu(), corrupted_top1)

    def recall(self) -> dict[int, float]:
        """Each class's share of its images classified right."""
        assert self.labels is not None, "per-class recall needs the labels"
        return {int(k): float(self.correct[self.labels == k].float().mean()) for k in self.labels.unique()}


def mcnemar(student_correct: torch.Tensor, champion_correct: torch.Tensor) -> tuple[int, int, float]:
    """Exact McNemar test: (only the student right, only the champion right, two-sided p-value)."""
    from scipy.stats import binomtest

    b = int((student_correct & ~champion_correct).sum())
    c = int((~student_correct & champion_correct).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


@dataclass
class GateResult:
    """Each check as a sentence, prefixed pass/fail; the student is promoted when none failed. ``data_sha256`` and
    ``images``: the data and the number of gate-split images the champion was compared on (None: not compared)."""

    checks: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    data_sha256: str | None = None
    images: int | None = None

    def check(self, ok: bool, text: str) -> None:
        self.checks.append(("pass: " if ok else "fail: ") + text)
        if not ok:
            self.failed.append(text)

    @property
    def promote(self) -> bool:
        return not self.failed


def _robustness_and_classes(
    result: GateResult, student: Scores, champion: Scores, version: str, gate: GateConfig
) -> None:
    """gate.max_robustness_drop and gate.max_class_drop: a clean win must not hide a loss under shift or in a class."""
    if gate.max_robustness_drop is not None:
        if student.corrupted_top1 is None or champion.corrupted_top1 is None:
            result.check(
                False,
                f"gate.max_robustness_drop is set, but the corrupted top-1 of the student or of champion "
                f"v{version} was not measured (validate.corruptions: none, or the champion moved): rerun "
                "validate",
            )
        else:
            drop = champion.corrupted_top1 - student.corrupted_top1
            result.check(
                drop <= gate.max_robustness_drop,
                f"mean corrupted top-1 {student.corrupted_top1:.4f} against the champion's "
                f"{champion.corrupted_top1:.4f}: a drop of {drop:+.4f}, limit gate.max_robustness_drop "
                f"{gate.max_robustness_drop:.4f}",
            )
    if gate.max_class_drop is not None:
        ours, theirs = student.recall(), champion.recall()
        k = max(theirs, key=lambda c: theirs[c] - ours.get(c, 0.0))
        drop = theirs[k] - ours.get(k, 0.0)
        result.check(
            drop <= gate.max_class_drop,
            f"largest per-class recall drop against the champion: class {k}, "
            f"{theirs[k]:.4f} -> {ours.get(k, 0.0):.4f} ({drop:+.4f}), limit "
            f"gate.max_class_drop {gate.max_class_drop:.4f}",
        )


def decide_gate(
    thresholds: Thresholds,
    student: Scores,
    gate: GateConfig,
    comparison: Comparison | None = None,
    champion: Scores | None = None,
) -> GateResult:
    """Apply the checks of the module docstring. ``comparison``: how the champion stands to the student's data (None:
    no champion); ``champion``: its scores on the student's gate split, needed whenever it is compared."""
    result = GateResult()
    result.check(bool(thresholds.passed), "; ".join(thresholds.reasons) or "the validation thresholds hold")
    if comparison is None:
        result.checks.append("no champion yet: nothing to beat")
        return result
    if comparison.refused is not None:
        result.check(False, comparison.refused)
        return result
    if champion is None:
        raise ValueError("decide_gate needs the champion's scores on the student's gate split when it is compared")
    result.data_sha256, result.images = student.data_sha256, len(champion.correct)
    result.check(True, comparison.line(student.data_sha256, len(champion.correct)))
    champion_version = comparison.version
    delta = student.top1 - champion.top1
    where = "" if comparison.same_data else " re-measured on today's gate split"
    ours, theirs = f"top-1 {student.top1:.4f}", f"champion v{champion_version} ({champion.top1:.4f}){where}"
    if delta <= 0:
        result.check(False, f"{ours} does not beat the {theirs}: {delta:+.4f}")
    else:
        enough = delta >= gate.min_improvement
        result.check(
            enough,
            f"{ours} beats the {theirs} by {delta:.4f}, {'at least' if enough else 'less than'} "
            f"gate.min_improvement {gate.min_improvement:.4f}",
        )
    _robustness_and_classes(result, student, champion, champion_version, gate)
    if gate.significance is not None:
        b, c, p = mcnemar(student.correct, champion.correct)
        ok = b > c and p < gate.significance
        result.check(
            ok,
            f"McNemar: {b} images only the student gets right, {c} only the champion; "
            f"p = {p:.3g} {'<' if p < gate.significance else '>='} gate.significance {gate.significance}",
        )
    return result
