"""The promotion rule: which students may serve, and the record of each decision."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdpipe.checkpoint import atomic_write_bytes
from kdpipe.config import ValidateConfig

PROMOTION_FILE = "promotion.json"


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


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_promotion(decision: dict[str, Any], model_path: Path, out_dir: Path, dry_run: bool) -> dict[str, Any]:
    """Write the local promotion record; a failed validation is recorded as not promoted."""
    promoted = bool(decision["passed"])
    message = (
        f"student promoted (top-1 {decision['top1']:.4f})"
        if promoted
        else "student not promoted: " + "; ".join(decision["reasons"])
    )
    record = {
        "promoted": promoted and not dry_run,
        "would_promote": promoted,
        "dry_run": dry_run,
        "message": ("dry run: " if dry_run else "") + message,
        "reasons": decision["reasons"],
        "data_sha256": decision.get("data_sha256"),
        "model_sha256": file_sha256(model_path) if model_path.exists() else None,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not dry_run:
        atomic_write_bytes(out_dir / PROMOTION_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return record
