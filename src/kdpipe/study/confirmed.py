"""The confirmation's verdicts: srd against each tuned baseline, and against each of its own ablations, with the
corrected intervals of :mod:`kdpipe.study.corrected`.

Two families, each Holm-corrected on its own: the primary claim (does the recipe beat each baseline, tuned the
same way) and the recipe's parts (does removing one make it worse). The runs must be independent pairs (each
transfer set and seed in one pair only, as ``--confirm`` draws them, or seeds on one fixed set, as ``--full``
trains on the whole split) and carry their per-image test hits; a study
whose runs do not gets one line saying why it has no corrected verdicts, never a t-interval in their place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdpipe.study.cells import ABLATIONS, BASELINES
from kdpipe.study.corrected import REPLICATES, Verdict, compare, holm, unpack
from kdpipe.study.summary import Pair, Summary, pair

RECIPE = "srd"


@dataclass(frozen=True)
class Family:
    title: str
    verdicts: list[Verdict]


def _hits(runs: list[dict[str, Any]], pairs: list[Pair]) -> np.ndarray:
    by_pair = {pair(r): r for r in runs}
    return np.stack([unpack(by_pair[p]["test_hits"], int(by_pair[p]["test_images"])) for p in pairs])


def by_cell(runs: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A study's runs (``result.json`` each, or ``results.json``'s ``runs``) grouped by their cell."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        grouped.setdefault(str(r["cell"]), []).append(dict(r))
    return grouped


def families(cells: Mapping[str, list[dict[str, Any]]]) -> list[Family] | str:
    """The two families' verdicts from each cell's runs; or why there are none (a reason, one line)."""
    if RECIPE not in cells:
        return f"no {RECIPE} cell"
    srd = cells[RECIPE]
    pairs = sorted(pair(r) for r in srd)
    one_set = len({d for d, _ in pairs}) == 1  # the whole split, or one transfer set: inference given it
    if len({s for _, s in pairs}) != len(pairs) or not (one_set or len({d for d, _ in pairs}) == len(pairs)):
        return "its pairs share transfer sets or seeds, so they are not independent (run kdpipe study --confirm)"
    missing = [name for name, runs in cells.items() if any("test_hits" not in r for r in runs)]
    if missing:
        return f"runs of {', '.join(missing)} carry no per-image test hits (measured before they were kept); rerun"
    found = []
    for title, others in (("srd against each tuned baseline", BASELINES), ("srd against its ablations", ABLATIONS)):
        comparisons = []
        for other in (o for o in others if o in cells):
            shared = sorted(set(pairs) & {pair(r) for r in cells[other]})
            if len(shared) >= 2:
                comparisons.append(compare(RECIPE, other, _hits(srd, shared), _hits(cells[other], shared)))
        if comparisons:
            found.append(Family(title, holm(comparisons)))
    return found


def table(found: list[Family]) -> list[str]:
    """The verdicts as the README's markdown table: each comparison's mean, its Holm-corrected interval and what
    is claimed (nothing, where the interval contains zero). ``tests/test_committed_results.py`` recomputes it
    from the committed per-run results."""
    rows = ["| srd against (test top-1, points) | mean | Holm-corrected interval | claim |", "|---|---|---|---|"]
    for family in found:
        for v in family.verdicts:
            c = v.comparison
            claim = f"srd {'above' if c.mean > 0 else 'below'}" if v.claimed else "none (the interval holds 0)"
            interval = f"[{100 * v.low:+.2f}, {100 * v.high:+.2f}] at {100 * v.level:.2f} %"
            rows.append(f"| {c.b} | {100 * c.mean:+.2f} | {interval} | {claim} |")
    return rows


def section(summaries: list[Summary]) -> list[str]:
    """The report's corrected verdicts (for the confirmation and the full-data phase)."""
    found = families({s.cell.name: s.runs for s in summaries})
    head = "Corrected verdicts (test top-1"
    if isinstance(found, str):
        return ["", f"{head}): none: {found}."]
    lines = [
        "",
        f"{head}; a two-level paired bootstrap over the pairs and the test images, {REPLICATES:,} replicates; "
        "Holm-corrected within each family at 5 %, each interval at its Holm step's level; a difference is "
        "claimed only where that interval excludes 0):",
    ]
    for family in found:
        n = len(family.verdicts)
        lines += ["", f"{family.title} ({n} comparison{'s' * (n != 1)}):", *(f"- {v.line()}" for v in family.verdicts)]
    return lines
