"""The promote step and the registry commands beside it (rollback, the alias webhook)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kdpipe.config import Params
from kdpipe.data.prepared import MANIFEST_FILE, PreparedData
from kdpipe.deploy import onnx_metadata
from kdpipe.deploy.deployment_record import registry_files
from kdpipe.evaluation import model_card
from kdpipe.evaluation.validation_metrics import ValidationMetrics
from kdpipe.infra import files
from kdpipe.infra.errors import KdpipeError
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.promotion import champion, siblings
from kdpipe.promotion import moves as registry_moves
from kdpipe.promotion.decision import Decision
from kdpipe.promotion.gate import Scores
from kdpipe.promotion.records import PromotionRecord, RepairRecord, RollbackRecord
from kdpipe.steps.spec import PROMOTE
from kdpipe.steps.tracked import tracked_run
from kdpipe.steps.workdir import claims
from kdpipe.teacher import source as teacher
from kdpipe.tracking import registry, tags, webhooks
from kdpipe.tracking.lineage import lineage_tags
from kdpipe.tracking.logged_models import logged_student
from kdpipe.tracking.server import check_tracking, tracking_errors
from kdpipe.tracking.ui_links import model_version

log = logging.getLogger("kdpipe")
T = TypeVar("T")


@dataclass(frozen=True)
class WebhookRecord:
    """The webhook the registry's server now calls, and a sentence saying so."""

    webhook_id: str
    message: str


def _read_validated(path: Path, parse: Callable[[dict[str, Any]], T]) -> T:
    """A file validate wrote, read into its type; one a different kdpipe wrote is a one-line error."""
    try:
        return parse(files.read_json(path))
    except (KeyError, TypeError) as exc:
        raise KdpipeError(
            f"{path}: not as this kdpipe's validate writes it ({exc!r}); rerun `kdpipe validate`"
        ) from exc


def _validated_manifest(params: Params, data_sha256: str) -> dict[str, Any]:
    """The manifest of the prepared data the student was validated on: its split and classes go into the version's
    tags, so that the next night can tell whether its gate split is free of this student's training images."""
    path = Path(params.paths.prepared) / MANIFEST_FILE
    if not path.exists():
        raise KdpipeError(f"{path}: missing; promote needs the prepared data the student was validated on")
    manifest = files.read_json(path)
    if manifest.get("sha256") != data_sha256:
        raise KdpipeError(
            f"{path}: the prepared data ({str(manifest.get('sha256'))[:12]}) changed since the student was validated "
            f"on {data_sha256[:12]}; rerun `kdpipe validate`"
        )
    return manifest


@claims(PROMOTE)
def promote(params: Params, dry_run: bool = False) -> PromotionRecord:
    """Register the validated student as ``challenger``; move ``champion`` to it when the gate agrees.

    The rule is :mod:`kdpipe.promotion.gate`'s, the registry moves :mod:`kdpipe.promotion.moves`'s; this step makes
    sure the student on disk is the one validated and hands both to them. ``dry_run`` changes nothing.
    """
    val_dir, model_path = Path(params.paths.validation), Path(params.paths.student) / MODEL_FILE
    decision_path = val_dir / files.DECISION_FILE
    if not decision_path.exists():
        raise KdpipeError(
            f"{decision_path}: missing; run `kdpipe validate` first (an unvalidated student is never promoted)"
        )
    if not model_path.exists():
        raise KdpipeError(f"{model_path}: missing; run `kdpipe distill` first")
    decision, model_sha = _read_validated(decision_path, Decision.from_dict), files.file_sha256(model_path)
    if decision.model_sha256 != model_sha:
        raise KdpipeError(
            f"{model_path}: changed since {decision_path} was written; rerun `kdpipe validate` before promoting it"
        )
    if not params.tracking.enabled:
        return _record_promotion(params, registry_moves.without_registry(decision, model_sha, dry_run=dry_run))
    manifest = _validated_manifest(params, decision.data_sha256)
    validated = files.load_checkpoint(val_dir / files.PREDICTIONS_FILE)
    result = Scores.from_predictions(
        validated["student"], validated["labels"], decision.data_sha256, decision.corrupted_top1
    )
    lineage = {**lineage_tags(params), **teacher.lineage(params)}
    metrics = _read_validated(val_dir / files.METRICS_FILE, ValidationMetrics.from_dict)
    version_tags = registry_moves.candidate_tags(
        lineage,
        metrics.student,
        basis=champion.validated_on(PreparedData({}, manifest)),  # the manifest's properties only
        model_sha256=model_sha,
        student_arch=load_model(model_path)[1]["arch"],
        method=params.method.name,
        passed=decision.passed,
    )
    check_tracking(params)
    mlflow_client, name = registry.client(params.tracking.uri), params.tracking.registered_model
    evaluate = champion.evaluator(params, validated, decision.data_sha256)
    if dry_run:
        with tracking_errors(params, "promote --dry-run"):
            cand = registry_moves.Candidate("(logged when promoted)", None, result, decision.thresholds, version_tags)
            record = registry_moves.promote_candidate(mlflow_client, name, cand, params.gate, evaluate, dry_run=True)
        return _record_promotion(params, record)
    exported = registry_files(val_dir)
    with tracked_run(params, PROMOTE, {tags.DATA_SHA256: decision.data_sha256, tags.MODEL_SHA256: model_sha}) as run:
        logged = logged_student(params, model_path) or run.log_classifier(
            load_model(model_path)[0], model_path, manifest
        )

        def log_exports(version: str) -> dict[str, str]:
            """The validated ONNX files, each with the registered version it belongs to added to its metadata."""
            added = onnx_metadata.registration_props(name, version)
            with tempfile.TemporaryDirectory(prefix="kdpipe-onnx-") as tmp:
                stamped = {
                    tag: onnx_metadata.stamp(path, added, Path(tmp) / path.name) for tag, path in exported.items()
                }
                return run.log_onnx(stamped, manifest)

        cand = registry_moves.Candidate(
            logged["model_uri"], logged["run_id"], result, decision.thresholds, version_tags, log_exports
        )
        record = registry_moves.promote_candidate(mlflow_client, name, cand, params.gate, evaluate)
        run.set_tags(
            {
                tags.PROMOTION_DECISION: "champion" if record.promoted else "challenger",
                tags.REGISTERED_VERSION: record.version,
            }
        )
        run.log_text(record.to_json(), files.PROMOTION_FILE)
        if record.version:
            transfer = min(params.train.subset or manifest["splits"]["train"], manifest["splits"]["train"])
            details = files.read_json(val_dir / files.DETAILS_FILE)
            card = model_card.build(name, record.version, version_tags, manifest, transfer, metrics, details, record)
            run.log_text(model_card.to_json(card), model_card.CARD_JSON)
            run.log_text(model_card.render(card), model_card.CARD_MD)
            registry.link_card(mlflow_client, name, record.version, f"runs:/{run.run_id}/{model_card.CARD_MD}")
        run.describe(record.message)
    return _record_promotion(params, record)


def _record_promotion(params: Params, record: PromotionRecord) -> PromotionRecord:
    """The decision next to the pipeline's outputs (DVC tracks it) and in the log; dry runs write nothing."""
    if not record.dry_run:
        files.atomic_write_text(Path(params.paths.promotion) / files.PROMOTION_FILE, record.to_json())
    log.info("promote: %s", record.message)
    if record.version and params.tracking.enabled:
        log.info("promote: %s", model_version(params, params.tracking.registered_model, record.version))
    return record


def rollback(params: Params, dry_run: bool = False) -> RollbackRecord:
    """Move ``champion`` back to the version it replaced, in the registry named by ``params.tracking``."""
    with tracking_errors(params, "rollback"):
        result = registry_moves.rollback(
            registry.connect(params, "rollback"), params.tracking.registered_model, dry_run=dry_run
        )
    log.info("rollback: %s", result.message)
    return result


def repair_registry(params: Params, dry_run: bool = False) -> RepairRecord:
    """Make the ONNX siblings' aliases follow the student's where an interrupted promote or rollback left them."""
    with tracking_errors(params, "registry repair"):
        result = siblings.repair(
            registry.connect(params, "registry repair"), params.tracking.registered_model, dry_run=dry_run
        )
    log.info("registry repair: %s", result.message)
    return result


def add_webhook(params: Params, url: str, secret: str) -> WebhookRecord:
    """Have the registry's MLflow server call ``url``, signed with ``secret``, when a version gets an alias."""
    with tracking_errors(params, "adding the webhook"):
        hook = webhooks.add_alias_webhook(
            registry.connect(params, "a webhook"), params.tracking.registered_model, url, secret
        )
    return WebhookRecord(
        hook.webhook_id,
        f"webhook {hook.webhook_id}: {params.tracking.uri} will POST to {url} when a version gets an alias "
        f"(act on alias 'champion' of {params.tracking.registered_model})",
    )
