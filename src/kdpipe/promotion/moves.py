"""Registry moves: register a validated student, move its aliases, roll back. The rule is :mod:`kdpipe.promotion.gate`.

Every validated student becomes a new version of the registered model and takes the alias
``challenger``; ``champion`` moves to it when :func:`kdpipe.promotion.gate.decide_gate` says so, comparing
the data the version tags of each say it was validated on (:func:`basis_from_tags`). The decision is taken
under the registry's promotion lock against the champion read under that lock, so two racing promotions
leave exactly one consistent champion. Aliases only: the deprecated stages are never used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kdpipe.config import GateConfig
from kdpipe.infra.errors import KdpipeError
from kdpipe.promotion import siblings
from kdpipe.promotion.comparison import Basis, compare
from kdpipe.promotion.decision import Decision
from kdpipe.promotion.gate import GateResult, Scores, Thresholds, decide_gate
from kdpipe.promotion.records import GateVerdict, PromotionRecord, RollbackRecord
from kdpipe.tracking import registry, run_notes, tags

HISTORY_CHARS = 4000
TAG_CHARS = 5000


Exports = Callable[[str], dict[str, str]]
"""Logs the student's deployable exports for its registered version and returns {version tag: model URI}
(:data:`kdpipe.promotion.siblings.SIBLINGS` names the tags)."""


@dataclass(frozen=True)
class Candidate:
    """A validated student ready for the registry; ``thresholds``: the validation's verdict; ``tags`` carry its
    lineage, its model sha256 and the data it was validated on (:func:`basis_tags`); ``exports``, when given,
    logs its ONNX files once its version is known, and they become the siblings' versions."""

    model_uri: str
    run_id: str | None
    result: Scores
    thresholds: Thresholds
    tags: dict[str, str]
    exports: Exports | None = None


ChampionEvaluator = Callable[[Any], Scores]  # a champion version's scores on the candidate's gate split


def basis_tags(basis: Basis) -> dict[str, str]:
    """The version tags recording what a student was validated on: data sha256, split fingerprint and classes."""
    out = {tags.DATA_SHA256: str(basis.data_sha256)}
    if basis.split_fingerprint is not None:
        out[tags.SPLIT_FINGERPRINT] = basis.split_fingerprint
    if basis.classes is not None:
        out[tags.CLASSES] = json.dumps(list(basis.classes))
    return out


def basis_from_tags(version_tags: dict[str, str]) -> Basis:
    """What a version was validated on, read back from its tags (None where a version predating them lacks one)."""
    classes = version_tags.get(tags.CLASSES)
    return Basis(
        version_tags.get(tags.DATA_SHA256),
        version_tags.get(tags.SPLIT_FINGERPRINT),
        None if classes is None else tuple(json.loads(classes)),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _judge(
    mlflow_client: Any, name: str, cand: Candidate, gate: GateConfig, evaluate: ChampionEvaluator
) -> tuple[Any, GateResult]:
    champion = registry.version_by_alias(mlflow_client, name, registry.CHAMPION)
    if champion is None:
        return None, decide_gate(cand.thresholds, cand.result, gate)
    today = basis_from_tags({**cand.tags, tags.DATA_SHA256: cand.result.data_sha256})
    comparison = compare(str(champion.version), basis_from_tags(champion.tags), today, gate.champion_on_new_data)
    scored = evaluate(champion) if comparison.scores_champion else None
    return champion, decide_gate(cand.thresholds, cand.result, gate, comparison, scored)


def _append_history(mlflow_client: Any, name: str, event: str) -> None:
    """A short audit trail on the registered model itself, newest last (the UI shows it)."""
    old = mlflow_client.get_registered_model(name).tags.get(tags.CHAMPION_HISTORY, "")
    text = (old + "\n" if old else "") + f"{_now()} {event}"
    mlflow_client.set_registered_model_tag(name, tags.CHAMPION_HISTORY, text[-HISTORY_CHARS:])


def promote_candidate(
    mlflow_client: Any,
    name: str,
    cand: Candidate,
    gate: GateConfig,
    evaluate_champion: ChampionEvaluator,
    *,
    dry_run: bool = False,
    lock_options: dict[str, float] | None = None,
) -> PromotionRecord:
    """Register ``cand`` as challenger and move champion to it when the gate says so."""
    if dry_run:
        champion, verdict = _judge(mlflow_client, name, cand, gate, evaluate_champion)
        current = f"v{champion.version}" if champion else "none"
        outcome = "would become champion" if verdict.promote else f"would stay challenger (champion stays {current})"
        return _record(
            cand,
            verdict,
            None,
            champion,
            promoted=False,
            dry_run=True,
            message=f"dry run: nothing changed; the student would be registered as a new version of "
            f"{name} and {outcome}: " + "; ".join(verdict.checks),
        )
    with registry.promotion_lock(mlflow_client, name, **(lock_options or {})):
        repaired = siblings.repair_note(mlflow_client, name)
        mv = _registered(mlflow_client, name, cand)
        version = str(mv.version)
        champion = registry.version_by_alias(mlflow_client, name, registry.CHAMPION)
        if champion is not None and str(champion.version) == version:
            return _record(
                cand,
                GateResult(checks=[f"v{version} is already the champion"]),
                version,
                champion,
                promoted=False,
                dry_run=False,
                message=f"{name} v{version} is already the champion; nothing to do{repaired}",
            )
        champion, verdict = _judge(mlflow_client, name, cand, gate, evaluate_champion)
        mlflow_client.set_registered_model_alias(name, registry.CHALLENGER, version)
        now = _now()
        if verdict.promote:
            # The back pointer is written before the alias moves, so a champion always has it.
            mlflow_client.set_model_version_tag(
                name, version, tags.PREVIOUS_CHAMPION, str(champion.version) if champion else ""
            )
            mlflow_client.set_registered_model_alias(name, registry.CHAMPION, version)
            mlflow_client.set_model_version_tag(name, version, tags.CHAMPION_SINCE, now)
            _append_history(
                mlflow_client, name, f"champion v{champion.version if champion else '-'} -> v{version} (promoted)"
            )
        siblings.follow(mlflow_client, name)
        decision_tags = {
            tags.PROMOTION_DECISION: "champion" if verdict.promote else "challenger",
            tags.PROMOTION_REASONS: "; ".join(verdict.checks)[:TAG_CHARS],
            tags.PROMOTION_COMPARED_WITH: f"v{champion.version}" if champion else "none",
            tags.PROMOTION_DECIDED_AT: now,
        }
        if verdict.data_sha256 is not None:
            decision_tags[tags.PROMOTION_COMPARED_ON] = verdict.data_sha256
            decision_tags[tags.PROMOTION_COMPARED_IMAGES] = str(verdict.images)
        for key, value in decision_tags.items():
            mlflow_client.set_model_version_tag(name, version, key, value)
        mlflow_client.update_model_version(
            name,
            version,
            description=run_notes.version(
                cand.tags,
                decision_tags[tags.PROMOTION_DECISION],
                verdict.checks,
                decision_tags[tags.PROMOTION_COMPARED_WITH],
            ),
        )
    current = f"v{champion.version}" if champion else "none"
    message = (
        f"{name} v{version} is the new champion (previous: {current}): " + "; ".join(verdict.checks)
        if verdict.promote
        else f"{name} v{version} stays challenger, champion stays {current}: " + "; ".join(verdict.failed)
    ) + repaired
    return _record(cand, verdict, version, champion, promoted=verdict.promote, dry_run=False, message=message)


def _registered(mlflow_client: Any, name: str, cand: Candidate) -> Any:
    """The student's version (registered now, or found by its model sha256 when a promote of it ran before),
    its exports logged and tagged on it once, and their sibling versions registered, all before any alias moves."""
    mv = registry.find_version_by_tag(mlflow_client, name, tags.MODEL_SHA256, cand.tags[tags.MODEL_SHA256])
    if mv is None:
        mv = registry.register_version(mlflow_client, name, cand.model_uri, cand.run_id, cand.tags)
    if cand.exports is not None and not any(tag in mv.tags for tag in siblings.SIBLINGS):
        for tag, uri in cand.exports(str(mv.version)).items():
            mlflow_client.set_model_version_tag(name, mv.version, tag, uri)
        mv = registry.get_version(mlflow_client, name, str(mv.version))
    siblings.register(mlflow_client, name, mv, cand.run_id)
    return mv


def _record(
    cand: Candidate,
    verdict: GateResult,
    version: str | None,
    champion: Any,
    *,
    promoted: bool,
    dry_run: bool,
    message: str,
) -> PromotionRecord:
    return PromotionRecord(
        promoted=promoted,
        would_promote=verdict.promote,
        dry_run=dry_run,
        message=message,
        reasons=tuple(verdict.failed),
        version=version,
        data_sha256=cand.result.data_sha256,
        model_sha256=cand.tags.get(tags.MODEL_SHA256),
        gate=GateVerdict(tuple(verdict.checks), str(champion.version) if champion is not None else None, _now()),
    )


def rollback(
    mlflow_client: Any, name: str, *, dry_run: bool = False, lock_options: dict[str, float] | None = None
) -> RollbackRecord:
    """Move ``champion`` back to the version it replaced (the chain lives in version tags)."""

    def plan() -> tuple[Any, Any]:
        champion = registry.version_by_alias(mlflow_client, name, registry.CHAMPION)
        if champion is None:
            raise KdpipeError(f"registry: {name} has no champion to roll back")
        previous = champion.tags.get(tags.PREVIOUS_CHAMPION)
        if not previous:
            raise KdpipeError(
                f"registry: champion v{champion.version} of {name} has no previous champion to roll back to"
            )
        target = registry.get_version(mlflow_client, name, previous)
        if target is None:
            raise KdpipeError(f"registry: the previous champion v{previous} of {name} no longer exists")
        return champion, target

    if dry_run:
        champion, target = plan()
        return RollbackRecord(
            rolled_back=False,
            dry_run=True,
            from_version=str(champion.version),
            to_version=str(target.version),
            message=f"dry run: nothing changed; champion of {name} would move from v{champion.version} "
            f"back to v{target.version}",
        )
    with registry.promotion_lock(mlflow_client, name, **(lock_options or {})):
        champion, target = plan()
        now = _now()
        mlflow_client.set_model_version_tag(name, champion.version, tags.ROLLED_BACK_AT, now)
        mlflow_client.set_model_version_tag(name, champion.version, tags.ROLLED_BACK_TO, str(target.version))
        mlflow_client.set_registered_model_alias(name, registry.CHAMPION, target.version)
        mlflow_client.set_model_version_tag(name, target.version, tags.CHAMPION_SINCE, now)
        _append_history(mlflow_client, name, f"champion v{champion.version} -> v{target.version} (rollback)")
        siblings.follow(mlflow_client, name)
    return RollbackRecord(
        rolled_back=True,
        dry_run=False,
        from_version=str(champion.version),
        to_version=str(target.version),
        message=f"champion of {name} moved from v{champion.version} back to v{target.version}",
    )


def without_registry(decision: Decision, model_sha256: str, *, dry_run: bool) -> PromotionRecord:
    """The promotion record when tracking is off: nothing registered, the validation's verdict said."""
    verdict = "passed" if decision.passed else "failed: " + "; ".join(decision.reasons)
    return PromotionRecord(
        promoted=False,
        would_promote=decision.passed,
        dry_run=dry_run,
        message=f"tracking.enabled is false: no registry, nothing promoted; validation {verdict}",
        reasons=decision.reasons,
        version=None,
        data_sha256=decision.data_sha256,
        model_sha256=model_sha256,
        gate=None,
    )


def candidate_tags(
    lineage: dict[str, str],
    student: dict[str, Any],
    *,
    basis: Basis,
    model_sha256: str,
    student_arch: str,
    method: str,
    passed: bool,
) -> dict[str, str]:
    """The version tags of a validated student: its lineage, what it was validated on, hashes and validated figures."""
    return {
        **lineage,
        **basis_tags(basis),
        tags.MODEL_SHA256: model_sha256,
        tags.STUDENT_ARCH: student_arch,
        tags.METHOD: method,
        tags.VALIDATION_PASSED: str(passed),
        **{tags.recorded_metric(k): str(student[k]) for k in tags.RECORDED_METRICS if k in student},
    }
