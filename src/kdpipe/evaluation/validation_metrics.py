"""What validate_student reports: each model's scalars on the test split and on the gate split, the
operational sets and the inference cost. It is the step's result and ``metrics.json``.

:func:`kdpipe.evaluation.validation.summary` builds it from the measurement; its JSON is made and read
here only (``to_dict``/``from_dict``), and its readers (the steps, the CLI, the Kubeflow component) read
attributes. One model's figures stay a mapping from metric name to number: the names are open (the
corruption suite adds one per corruption and severity) and are what MLflow and Kubeflow log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Figures = dict[str, Any]  # one model's figures by metric name


@dataclass(frozen=True)
class GateFigures:
    """Each model's figures on the gate split ``split``, where the thresholds and the promotion gate decide:
    top-1 and, when the corruption suite ran, its figures; ``champion`` is None when it was not comparable."""

    split: str
    teacher: Figures
    student: Figures
    champion: Figures | None

    def of(self, who: str) -> Figures | None:
        """``who``'s figures: ``student``, ``teacher`` or ``champion``."""
        return {"student": self.student, "teacher": self.teacher, "champion": self.champion}[who]

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "champion": self.champion, "teacher": self.teacher, "student": self.student}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateFigures:
        return cls(d["split"], d["teacher"], d["student"], d["champion"])


@dataclass(frozen=True)
class SetFigures:
    """One operational set: where it came from, how many images, its digest, each model's figures there (the
    champion's only when it was measured) and how far the set moved from the training data (``shift``)."""

    source: str
    kind: str
    num_samples: int
    sha256: str
    teacher: Figures
    student: Figures
    champion: Figures | None
    shift: Figures

    def of(self, who: str) -> Figures | None:
        return {"student": self.student, "teacher": self.teacher, "champion": self.champion}[who]

    def to_dict(self) -> dict[str, Any]:
        """The champion's key is left out when it was not measured."""
        return {
            "source": self.source,
            "kind": self.kind,
            "num_samples": self.num_samples,
            "sha256": self.sha256,
            "teacher": self.teacher,
            "student": self.student,
            **({"champion": self.champion} if self.champion is not None else {}),
            "shift": self.shift,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SetFigures:
        return cls(
            d["source"],
            d["kind"],
            d["num_samples"],
            d["sha256"],
            d["teacher"],
            d["student"],
            d.get("champion"),
            d["shift"],
        )


@dataclass(frozen=True)
class ValidationMetrics:
    """The test split's scalars per model (``champion`` None when not comparable), the gate split's figures,
    whether the thresholds passed, how the corruption suite ran, the operational sets by name and the
    deployment (the exported formats' parity and cost as :meth:`kdpipe.deploy.deployment.Deployment.as_dict`
    writes them; None without an export)."""

    student: Figures
    teacher: Figures
    champion: Figures | None
    gate: GateFigures
    passed: bool
    corruptions: str
    operational: dict[str, SetFigures]
    deployment: dict[str, Any] | None

    def of(self, who: str) -> Figures | None:
        """``who``'s test-split figures: ``student``, ``teacher`` or ``champion``."""
        return {"student": self.student, "teacher": self.teacher, "champion": self.champion}[who]

    def to_dict(self) -> dict[str, Any]:
        """``metrics.json``, and the scalars the Kubeflow Metrics artifact logs (in this order)."""
        return {
            "student": self.student,
            "teacher": self.teacher,
            "passed": self.passed,
            "champion": self.champion,
            "gate": self.gate.to_dict(),
            "corruptions": self.corruptions,
            "operational": {name: f.to_dict() for name, f in self.operational.items()},
            "deployment": self.deployment,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationMetrics:
        return cls(
            student=d["student"],
            teacher=d["teacher"],
            champion=d["champion"],
            gate=GateFigures.from_dict(d["gate"]),
            passed=d["passed"],
            corruptions=d["corruptions"],
            operational={name: SetFigures.from_dict(f) for name, f in d["operational"].items()},
            deployment=d["deployment"],
        )
