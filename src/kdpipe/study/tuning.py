"""Choosing each method's setting from its tuning grid on val, and the report of the whole grid.

The choice reads val top-1 only (mean over the grid's seeds; a tie goes to the earlier setting in
grid order). Test top-1 is printed beside it for the record: it decides nothing. What is chosen
becomes the method's default in params.yaml by hand, with the tuning study named in the change log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdpipe.infra.files import write_json
from kdpipe.study.grids import PREFIX, TUNED_METHODS, knobs
from kdpipe.study.summary import Summary, pct, table

TUNING_FILE = "tuning.json"
SELECTED_ON = "val_top1"


@dataclass(frozen=True)
class Choice:
    method: str
    chosen: Summary
    grid: list[Summary]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cell": self.chosen.cell.name,
            "overrides": knobs(self.chosen.cell),
            "grid_size": len(self.grid),
            SELECTED_ON: self.chosen.mean(SELECTED_ON),
            "test_top1": self.chosen.mean("test_top1"),
            "seeds": [r["seed"] for r in self.chosen.runs],
        }


def is_tuning(summary: Summary) -> bool:
    return summary.cell.name.startswith(PREFIX)


def choose(summaries: list[Summary]) -> list[Choice]:
    """Per tuned method with a grid in ``summaries``, the setting with the highest mean val top-1."""
    choices = []
    for method in TUNED_METHODS:
        grid = [s for s in summaries if is_tuning(s) and s.cell.method == method]
        if grid:
            best = max(grid, key=lambda s: s.mean(SELECTED_ON))  # max keeps the first of equal values
            choices.append(Choice(method, best, grid))
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
        lines += [
            "",
            f"{c.method} ({len(c.grid)} settings): `{' '.join('-p ' + k for k in knobs(c.chosen.cell))}`",
            "",
            *table(rows),
        ]
    return lines


def write_choices(path: Path, choices: list[Choice]) -> None:
    write_json(path, {"selected_on": SELECTED_ON, "choices": {c.method: c.as_dict() for c in choices}})
