"""A cell's runs summarised over seeds, and the Markdown helpers every report section shares."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from kdpipe.study import diverged
from kdpipe.study.cells import Cell

Pair = tuple[int, int]  # (data seed, or -1 for data.seed's transfer set; seed)


def pair(run: dict[str, Any]) -> Pair:
    """Which transfer set and seed a run had: runs of two cells with the same pair differ only in the cell."""
    data_seed = run.get("data_seed")
    return (-1 if data_seed is None else int(data_seed), int(run["seed"]))


@dataclass(frozen=True)
class Summary:
    cell: Cell
    teacher_arch: str | None
    runs: list[dict[str, Any]]

    def _values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.runs]

    def mean(self, key: str) -> float:
        return statistics.fmean(self._values(key))

    def std(self, key: str) -> float:
        values = self._values(key)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def metrics(self, scratch: Summary | None) -> dict[str, float | None]:
        """The cell's numbers over its runs, as results.json and the MLflow cell and parent runs hold them."""
        return {
            "test_top1_mean": self.mean("test_top1"),
            "test_top1_std": self.std("test_top1"),
            "val_top1_mean": self.mean("val_top1"),
            "val_top1_std": self.std("val_top1"),
            "delta_vs_scratch": None if scratch is None else self.mean("test_top1") - scratch.mean("test_top1"),
            "train_seconds_mean": self.mean("train_seconds"),
            "images_per_s_mean": self.mean("images_per_s"),
        }

    def as_dict(self, scratch: Summary | None) -> dict[str, Any]:
        return {
            "cell": self.cell.name,
            "what": self.cell.what,
            "method": self.cell.method,
            "teacher_arch": self.teacher_arch,
            "seeds": [r["seed"] for r in self.runs],
            "data_seeds": [r.get("data_seed") for r in self.runs],
            "test_top1": self._values("test_top1"),
            **self.metrics(scratch),
        }


def summarise(cells: list[Cell], results: list[dict[str, Any]], teacher_archs: dict[str, str]) -> list[Summary]:
    """Each cell's scored runs (a diverged run has no score: :mod:`kdpipe.study.diverged`)."""
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(diverged.scored(results), key=pair):
        by_cell.setdefault(r["cell"], []).append(r)
    return [
        Summary(c, None if c.method == "scratch" else teacher_archs[c.gap_role or "main"], by_cell[c.name])
        for c in cells
        if c.name in by_cell
    ]


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def table(rows: list[list[str]]) -> list[str]:
    head, *body = rows
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]
