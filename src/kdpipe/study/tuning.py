"""Choosing each method's setting from its tuning grid on val, and the report of the whole grid.

The choice reads val top-1 only (mean over the grid's seeds; a tie goes to the earlier setting in
grid order). Test top-1 is printed beside it for the record: it decides nothing. A choice at the end of
an extending axis is not final: :mod:`kdpipe.study.tune_rounds` trains the next step past it first
(:func:`kdpipe.study.grids.edge_cells`), and the report says where a choice is still at an end. What is
chosen becomes the method's default in params.yaml by hand, with the tuning study named in the change log.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdpipe.infra.files import write_json
from kdpipe.study.cells import Cell
from kdpipe.study.grids import GRIDS, PREFIX, edge_cells, knobs
from kdpipe.study.summary import Summary, pct, table

TUNING_FILE = "tuning.json"
SELECTED_ON = "val_top1"


@dataclass(frozen=True)
class Choice:
    method: str
    chosen: Summary
    grid: list[Summary]
    """Every setting tried and scored: the grid's and the steps past its ends."""
    diverged: tuple[Cell, ...] = ()
    """Settings tried and ruled out: a run's loss stopped being finite (:mod:`kdpipe.study.diverged`)."""

    @property
    def extensions(self) -> int:
        """How many settings were tried past the grid's own ends."""
        return len(self.grid) + len(self.diverged) - len(GRIDS[self.method].cells())

    def at_edge(self) -> list[str]:
        """The cells one step past the choice that are still untried: empty once the choice is inside its ranges."""
        tried = [s.cell for s in self.grid] + list(self.diverged)
        return [c.name for c in edge_cells(GRIDS[self.method], tried, self.chosen.cell)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cell": self.chosen.cell.name,
            "overrides": knobs(self.chosen.cell),
            "grid_size": len(self.grid),
            "extensions": self.extensions,
            "diverged": [c.name for c in self.diverged],
            "still_at_edge": self.at_edge(),
            SELECTED_ON: self.chosen.mean(SELECTED_ON),
            "test_top1": self.chosen.mean("test_top1"),
            "seeds": [r["seed"] for r in self.chosen.runs],
        }


def is_tuning(summary: Summary) -> bool:
    return summary.cell.name.startswith(PREFIX)


def choose(summaries: list[Summary], diverged: Collection[Cell] = ()) -> list[Choice]:
    """Per method with a grid in ``summaries``, the setting with the highest mean val top-1 among those none of
    whose runs ``diverged``."""
    out = {c.name for c in diverged}
    choices = []
    for method in GRIDS:
        grid = [s for s in summaries if is_tuning(s) and s.cell.method == method and s.cell.name not in out]
        if grid:
            best = max(grid, key=lambda s: s.mean(SELECTED_ON))  # max keeps the first of equal values
            lost = tuple(c for c in diverged if c.name.startswith(PREFIX) and c.method == method)
            choices.append(Choice(method, best, grid, lost))
    return choices


def section(choices: list[Choice]) -> list[str]:
    """The whole grid of each method, best val first, the choice marked."""
    if not choices:
        return []
    lines = ["", "Tuning grids (chosen on val top-1, mean over seeds; test top-1 reported, not used):"]
    for c in choices:
        rows = [["setting", "val top-1", "test top-1", "n", "chosen"]]
        for s in sorted(c.grid, key=lambda s: -s.mean(SELECTED_ON)):
            spread = f" ± {pct(s.std(SELECTED_ON))}" if len(s.runs) > 1 else ""
            rows.append(
                [
                    s.cell.what,
                    f"{pct(s.mean(SELECTED_ON))}{spread}",
                    f"{pct(s.mean('test_top1'))}",
                    str(len(s.runs)),
                    "**yes**" if s is c.chosen else "",
                ]
            )
        past = f", {c.extensions} of them past the grid's ends" if c.extensions else ""
        edge = c.at_edge()
        note = [f"Still at an end of its range after {c.extensions} step(s) past it: {', '.join(edge)} untried."]
        lost = [f"Ruled out, the loss stopped being finite (results.json has each error): {_names(c.diverged)}."]
        tried = len(c.grid) + len(c.diverged)
        lines += [
            "",
            f"{c.method} ({tried} settings{past}): `{' '.join('-p ' + k for k in knobs(c.chosen.cell))}`",
            "",
            *table(rows),
            *(["", *lost] if c.diverged else []),
            *(["", *note] if edge else []),
        ]
    return lines


def _names(cells: tuple[Cell, ...]) -> str:
    return "; ".join(c.what for c in cells)


def write_choices(path: Path, choices: list[Choice]) -> None:
    write_json(path, {"selected_on": SELECTED_ON, "choices": {c.method: c.as_dict() for c in choices}})
