"""The validation's decision as promote reads it: the thresholds' verdict and what it was measured on.

validate_student decides (:func:`kdpipe.evaluation.validation.decide`) and writes ``decision.json``;
promote reads it back, checks that the student on disk is the one validated (``model_sha256``) and
hands the verdict to the gate. The JSON is made here and only here (:meth:`Decision.to_dict`,
:meth:`Decision.from_dict`); everything in between reads attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdpipe.promotion.gate import Thresholds


@dataclass(frozen=True)
class ChampionSeen:
    """The champion when validate ran: its version (None when there was none), why it was or was not measured,
    and its top-1 on the gate split (None when it was not comparable)."""

    version: str | None
    note: str
    top1: float | None


@dataclass(frozen=True)
class Decision:
    """The thresholds of ``validate.*`` on the gate split ``split``, for the student whose file hashes to
    ``model_sha256``, on the prepared data ``data_sha256``; ``corrupted_top1`` is its mean top-1 on the
    corruption suite (None when not measured)."""

    thresholds: Thresholds
    split: str
    data_sha256: str
    model_sha256: str
    corrupted_top1: float | None
    champion: ChampionSeen

    @property
    def passed(self) -> bool:
        return self.thresholds.passed

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.thresholds.reasons

    def to_dict(self) -> dict[str, Any]:
        """``decision.json``: one flat object, the champion nested."""
        t = self.thresholds
        return {
            "passed": t.passed,
            "reasons": list(t.reasons),
            "top1": t.top1,
            "teacher_gap": t.teacher_gap,
            "latency_ms": t.latency_ms,
            "memory_mb": t.memory_mb,
            "deploy_format": t.deploy_format,
            **({"latency_on": t.latency_on} if t.latency_on else {}),  # only with validate.device_profile
            "split": self.split,
            "data_sha256": self.data_sha256,
            "model_sha256": self.model_sha256,
            "corrupted_top1": self.corrupted_top1,
            "champion": {"version": self.champion.version, "note": self.champion.note, "top1": self.champion.top1},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        """Read ``decision.json`` back; a missing key raises KeyError (``latency_on`` is written only with a device
        profile)."""
        thresholds = Thresholds(
            d["passed"],
            tuple(d["reasons"]),
            d["top1"],
            d["teacher_gap"],
            d["latency_ms"],
            d["memory_mb"],
            d["deploy_format"],
            d.get("latency_on"),
        )
        champion = d["champion"]
        return cls(
            thresholds,
            d["split"],
            d["data_sha256"],
            d["model_sha256"],
            d["corrupted_top1"],
            ChampionSeen(champion["version"], champion["note"], champion["top1"]),
        )
