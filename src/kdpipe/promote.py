"""The promotion rule: which students may serve, and how the registry's aliases follow it.

Every validated student becomes a new version of the registered model and takes the alias
``challenger``. ``champion`` moves to it only when every check holds:

1. the thresholds of ``validate.*`` passed (minimum top-1, maximum gap to the teacher, latency);
2. it was evaluated on the same data (sha256) as the current champion;
3. its test top-1 beats the champion's by more than zero and by at least ``gate.min_improvement``
   (a tie never moves the champion, so rerunning the same params on the same data keeps it);
4. where ``gate.significance`` is set, the exact McNemar test on the two models' paired test
   predictions gives p < significance with the student ahead on the discordant pairs.

With no champion yet, passing the thresholds is enough. The decision is taken under the registry's
promotion lock against the champion read under that lock, so two racing promotions leave exactly
one consistent champion. Aliases only: the deprecated stages are never used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from kdpipe import registry
from kdpipe.checkpoint import atomic_write_bytes
from kdpipe.config import GateConfig, Params, ValidateConfig
from kdpipe.errors import KdpipeError
from kdpipe.tracking import check_tracking, tracking_errors

log = logging.getLogger("kdpipe")

PROMOTION_FILE = "promotion.json"
MODEL_SHA_TAG = "kdpipe.model_sha256"
DATA_SHA_TAG = "kdpipe.data_sha256"
PREVIOUS_TAG = "kdpipe.previous_champion"
HISTORY_TAG = "kdpipe.champion_history"
HISTORY_CHARS = 4000
TAG_CHARS = 5000


def decide_thresholds(student: dict[str, Any], teacher: dict[str, Any], cfg: ValidateConfig) -> dict[str, Any]:
    """Pass only when every threshold in ``validate`` holds; each failure gives its reason."""
    reasons = []
    if student["top1"] < cfg.min_top1:
        reasons.append(f"top-1 {student['top1']:.4f} is below validate.min_top1 {cfg.min_top1:.4f}")
    gap = teacher["top1"] - student["top1"]
    if cfg.max_teacher_gap is not None and gap > cfg.max_teacher_gap:
        reasons.append(f"gap to the teacher {gap:.4f} exceeds validate.max_teacher_gap {cfg.max_teacher_gap:.4f}")
    latency = student["latency_ms_batch1"]
    if cfg.max_latency_ms is not None and latency > cfg.max_latency_ms:
        reasons.append(f"latency {latency:.2f} ms exceeds validate.max_latency_ms {cfg.max_latency_ms:.2f}")
    return {"passed": not reasons, "reasons": reasons, "top1": student["top1"], "teacher_gap": gap, "latency_ms": latency}


@dataclass(frozen=True)
class Scores:
    """One model's predictions on a prepared test split: what the gate compares."""

    top1: float
    correct: torch.Tensor
    data_sha256: str

    @classmethod
    def from_predictions(cls, predictions: torch.Tensor, labels: torch.Tensor, data_sha256: str) -> Scores:
        correct = predictions.cpu() == labels.cpu()
        return cls(float(correct.float().mean()), correct, data_sha256)


def mcnemar(student_correct: torch.Tensor, champion_correct: torch.Tensor) -> tuple[int, int, float]:
    """Exact McNemar test: (only the student right, only the champion right, two-sided p-value)."""
    from scipy.stats import binomtest

    b = int((student_correct & ~champion_correct).sum())
    c = int((~student_correct & champion_correct).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


@dataclass
class GateResult:
    checks: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> None:
        self.checks.append(("pass: " if ok else "fail: ") + text)
        if not ok:
            self.failed.append(text)

    @property
    def promote(self) -> bool:
        return not self.failed


def decide_gate(
    thresholds: dict[str, Any],
    student: Scores,
    gate: GateConfig,
    champion_version: str | None = None,
    champion_sha: str | None = None,
    champion: Scores | None = None,
) -> GateResult:
    """Apply the four checks of the module docstring; ``champion`` is needed when the data match."""
    result = GateResult()
    result.check(bool(thresholds["passed"]), "; ".join(thresholds["reasons"]) or "the validation thresholds hold")
    if champion_version is None:
        result.checks.append("no champion yet: nothing to beat")
        return result
    if champion_sha != student.data_sha256:
        result.check(False, f"evaluated on data {student.data_sha256[:12]}, the champion v{champion_version} on "
                            f"{str(champion_sha)[:12]}: not comparable")
        return result
    result.check(True, f"evaluated on the champion's data {student.data_sha256[:12]}")
    if champion is None:
        raise ValueError("decide_gate needs the champion's test results when the data match")
    delta = student.top1 - champion.top1
    ours, theirs = f"top-1 {student.top1:.4f}", f"champion v{champion_version} ({champion.top1:.4f})"
    if delta <= 0:
        result.check(False, f"{ours} does not beat the {theirs}: {delta:+.4f}")
    else:
        enough = delta >= gate.min_improvement
        result.check(enough, f"{ours} beats the {theirs} by {delta:.4f}, {'at least' if enough else 'less than'} "
                             f"gate.min_improvement {gate.min_improvement:.4f}")
    if gate.significance is not None:
        b, c, p = mcnemar(student.correct, champion.correct)
        ok = b > c and p < gate.significance
        result.check(ok, f"McNemar: {b} test images only the student gets right, {c} only the champion; "
                         f"p = {p:.3g} {'<' if p < gate.significance else '>='} gate.significance {gate.significance}")
    return result


@dataclass(frozen=True)
class Candidate:
    """A validated student ready for the registry; ``tags`` carry its lineage and its model sha256."""

    model_uri: str
    run_id: str | None
    result: Scores
    thresholds: dict[str, Any]
    tags: dict[str, str]


ChampionEvaluator = Callable[[Any], Scores]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _judge(mlflow_client: Any, name: str, cand: Candidate, gate: GateConfig, evaluate: ChampionEvaluator) -> tuple[Any, GateResult]:
    champion = registry.version_by_alias(mlflow_client, name, registry.CHAMPION)
    if champion is None:
        return None, decide_gate(cand.thresholds, cand.result, gate)
    sha = champion.tags.get(DATA_SHA_TAG)
    scored = evaluate(champion) if sha == cand.result.data_sha256 else None
    return champion, decide_gate(cand.thresholds, cand.result, gate, str(champion.version), sha, scored)


def _append_history(mlflow_client: Any, name: str, event: str) -> None:
    """A short audit trail on the registered model itself, newest last (the UI shows it)."""
    old = mlflow_client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    text = (old + "\n" if old else "") + f"{_now()} {event}"
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, text[-HISTORY_CHARS:])


def promote_candidate(
    mlflow_client: Any,
    name: str,
    cand: Candidate,
    gate: GateConfig,
    evaluate_champion: ChampionEvaluator,
    *,
    dry_run: bool = False,
    lock_options: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Register ``cand`` as challenger and move champion to it when the gate says so."""
    if dry_run:
        champion, verdict = _judge(mlflow_client, name, cand, gate, evaluate_champion)
        current = f"v{champion.version}" if champion else "none"
        outcome = "would become champion" if verdict.promote else f"would stay challenger (champion stays {current})"
        return _record(cand, verdict, None, champion, promoted=False, dry_run=True,
                       message=f"dry run: nothing changed; the student would be registered as a new version of "
                               f"{name} and {outcome}: " + "; ".join(verdict.checks))
    with registry.promotion_lock(mlflow_client, name, **(lock_options or {})):
        mv = registry.find_version_by_tag(mlflow_client, name, MODEL_SHA_TAG, cand.tags[MODEL_SHA_TAG])
        if mv is None:
            mv = registry.register_version(mlflow_client, name, cand.model_uri, cand.run_id, cand.tags)
        version = str(mv.version)
        champion = registry.version_by_alias(mlflow_client, name, registry.CHAMPION)
        if champion is not None and str(champion.version) == version:
            return _record(cand, GateResult(checks=[f"v{version} is already the champion"]), version, champion,
                           promoted=False, dry_run=False, message=f"{name} v{version} is already the champion; nothing to do")
        champion, verdict = _judge(mlflow_client, name, cand, gate, evaluate_champion)
        mlflow_client.set_registered_model_alias(name, registry.CHALLENGER, version)
        now = _now()
        if verdict.promote:
            # The back pointer is written before the alias moves, so a champion always has it.
            mlflow_client.set_model_version_tag(name, version, PREVIOUS_TAG, str(champion.version) if champion else "")
            mlflow_client.set_registered_model_alias(name, registry.CHAMPION, version)
            mlflow_client.set_model_version_tag(name, version, "kdpipe.champion_since", now)
            _append_history(mlflow_client, name, f"champion v{champion.version if champion else '-'} -> v{version} (promoted)")
        decision_tags = {
            "kdpipe.promotion.decision": "champion" if verdict.promote else "challenger",
            "kdpipe.promotion.reasons": "; ".join(verdict.checks)[:TAG_CHARS],
            "kdpipe.promotion.compared_with": f"v{champion.version}" if champion else "none",
            "kdpipe.promotion.decided_at": now,
        }
        for key, value in decision_tags.items():
            mlflow_client.set_model_version_tag(name, version, key, value)
    current = f"v{champion.version}" if champion else "none"
    message = (
        f"{name} v{version} is the new champion (previous: {current}): " + "; ".join(verdict.checks)
        if verdict.promote
        else f"{name} v{version} stays challenger, champion stays {current}: " + "; ".join(verdict.failed)
    )
    return _record(cand, verdict, version, champion, promoted=verdict.promote, dry_run=False, message=message)


def _record(cand: Candidate, verdict: GateResult, version: str | None, champion: Any, *, promoted: bool, dry_run: bool,
            message: str) -> dict[str, Any]:
    return {
        "promoted": promoted,
        "would_promote": verdict.promote,
        "dry_run": dry_run,
        "message": message,
        "checks": verdict.checks,
        "reasons": verdict.failed,
        "version": version,
        "compared_with": str(champion.version) if champion is not None else None,
        "data_sha256": cand.result.data_sha256,
        "model_sha256": cand.tags.get(MODEL_SHA_TAG),
        "decided_at": _now(),
    }


def rollback(mlflow_client: Any, name: str, *, dry_run: bool = False, lock_options: dict[str, float] | None = None) -> dict[str, Any]:
    """Move ``champion`` back to the version it replaced (the chain lives in version tags)."""
    def plan() -> tuple[Any, Any]:
        champion = registry.version_by_alias(mlflow_client, name, registry.CHAMPION)
        if champion is None:
            raise KdpipeError(f"registry: {name} has no champion to roll back")
        previous = champion.tags.get(PREVIOUS_TAG)
        if not previous:
            raise KdpipeError(f"registry: champion v{champion.version} of {name} has no previous champion to roll back to")
        target = registry.get_version(mlflow_client, name, previous)
        if target is None:
            raise KdpipeError(f"registry: the previous champion v{previous} of {name} no longer exists")
        return champion, target

    if dry_run:
        champion, target = plan()
        return {"rolled_back": False, "dry_run": True, "from": str(champion.version), "to": str(target.version),
                "message": f"dry run: nothing changed; champion of {name} would move from v{champion.version} back to v{target.version}"}
    with registry.promotion_lock(mlflow_client, name, **(lock_options or {})):
        champion, target = plan()
        now = _now()
        mlflow_client.set_model_version_tag(name, champion.version, "kdpipe.rolled_back_at", now)
        mlflow_client.set_model_version_tag(name, champion.version, "kdpipe.rolled_back_to", str(target.version))
        mlflow_client.set_registered_model_alias(name, registry.CHAMPION, target.version)
        mlflow_client.set_model_version_tag(name, target.version, "kdpipe.champion_since", now)
        _append_history(mlflow_client, name, f"champion v{champion.version} -> v{target.version} (rollback)")
    return {"rolled_back": True, "dry_run": False, "from": str(champion.version), "to": str(target.version),
            "message": f"champion of {name} moved from v{champion.version} back to v{target.version}"}


def rollback_champion(params: Params, dry_run: bool = False) -> dict[str, Any]:
    """``kdpipe rollback``: the registry named by ``params.tracking``."""
    if not params.tracking.enabled:
        raise KdpipeError("tracking.enabled: rollback needs the MLflow registry; it is off")
    check_tracking(params)
    with tracking_errors(params, "rollback"):
        result = rollback(registry.client(params.tracking.uri), params.tracking.registered_model, dry_run=dry_run)
    log.info("rollback: %s", result["message"])
    return result


def record_locally(record: dict[str, Any], out_dir: Path) -> None:
    """The promotion record next to the pipeline's outputs (DVC tracks it); dry runs write nothing."""
    if not record["dry_run"]:
        atomic_write_bytes(out_dir / PROMOTION_FILE, (json.dumps(record, indent=2) + "\n").encode())
