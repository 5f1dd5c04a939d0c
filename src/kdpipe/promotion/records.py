"""What promote and rollback decided and did: the records :mod:`kdpipe.promotion.moves` returns.

A promotion record is written as ``promotion.json`` (beside the pipeline's outputs and on the step's
MLflow run) by :meth:`PromotionRecord.to_json`, the one place its JSON is made; the steps, the CLI and
the Kubeflow component read attributes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GateVerdict:
    """The gate's run against the registry: every check as a sentence (prefixed pass/fail), the champion version
    it compared with (None when there was none) and when it decided."""

    checks: tuple[str, ...]
    compared_with: str | None
    decided_at: str


@dataclass(frozen=True)
class PromotionRecord:
    """``promoted``: champion moved to the student; ``would_promote``: what the gate (or, without a registry, the
    validation) said; ``version``: the registered version (None in a dry run or without a registry);
    ``reasons``: the failed checks; ``gate``: None when tracking is off (no registry, no gate)."""

    promoted: bool
    would_promote: bool
    dry_run: bool
    message: str
    reasons: tuple[str, ...]
    version: str | None
    data_sha256: str
    model_sha256: str | None
    gate: GateVerdict | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, its keys in the order ``promotion.json`` has always had them (with and without a registry)."""
        if self.gate is None:
            return {
                "promoted": self.promoted,
                "would_promote": self.would_promote,
                "dry_run": self.dry_run,
                "version": self.version,
                "message": self.message,
                "reasons": list(self.reasons),
                "data_sha256": self.data_sha256,
                "model_sha256": self.model_sha256,
            }
        return {
            "promoted": self.promoted,
            "would_promote": self.would_promote,
            "dry_run": self.dry_run,
            "message": self.message,
            "checks": list(self.gate.checks),
            "reasons": list(self.reasons),
            "version": self.version,
            "compared_with": self.gate.compared_with,
            "data_sha256": self.data_sha256,
            "model_sha256": self.model_sha256,
            "decided_at": self.gate.decided_at,
        }

    def to_json(self) -> str:
        """The text of ``promotion.json``."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


@dataclass(frozen=True)
class RollbackRecord:
    """``champion`` moved (or, in a dry run, would move) from ``from_version`` back to ``to_version``."""

    rolled_back: bool
    dry_run: bool
    from_version: str
    to_version: str
    message: str


@dataclass(frozen=True)
class RepairRecord:
    """The sibling aliases that disagreed with the student's: ``moved`` (or, in a dry run, would move) one line
    each; empty when the registries agreed."""

    moved: tuple[str, ...]
    dry_run: bool
    message: str
