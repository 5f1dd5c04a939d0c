"""The confirmation's verdicts: srd against each tuned baseline, and against each of its own ablations, with the
corrected intervals of :mod:`kdpipe.study.corrected`.

Two families, each Holm-corrected on its own: the primary claim (does the recipe beat each baseline, tuned the
same way) and the recipe's parts (does removing one make it worse). The runs must be independent pairs (each
transfer set and seed in one pair only, as ``--confirm`` draws them, or seeds on one fixed set, as ``--full``
trains on the whole split) and carry their per-image test hits; a study
whose runs do not gets one line saying why it has no corrected verdicts, never a t-interval in their place.
"""

from __future__ import annotations

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


def families(summaries: list[Summary]) -> list[Family] | str:
    """The two families' verdicts; or why there are none (a reason, one line)."""
    by_name = {s.cell.name: s for s in summaries}
    if RECIPE not in by_name:
        return f"no {RECIPE} cell"
    srd = by_name[RECIPE]
    pairs = sorted(pair(r) for r in srd.runs)
    one_set = len({d for d, _ in pairs}) == 1  # the whole split, or one transfer set: inference given it
    if len({s for _, s in pairs}) != len(pairs) or not (one_set or len({d for d, _ in pairs}) == len(pairs)):
        return "its pairs share transfer sets or seeds, so they are not independent (run kdpipe study --confirm)"
    missing = [s.cell.name for s in summaries if any("test_hits" not in r for r in s.runs)]
    if missing:
        return f"runs of {', '.join(missing)} carry no per-image test hits (measured before they were kept); rerun"
    found = []
    for title, others in (("srd against each tuned baseline", BASELINES), ("srd against its ablations", ABLATIONS)):
        cells = [by_name[o] for o in others if o in by_name]
        comparisons = []
        for other in cells:
            shared = sorted(set(pairs) & {pair(r) for r in other.runs})
            if len(shared) >= 2:
                hits = _hits(srd.runs, shared), _hits(other.runs, shared)
                comparisons.append(compare(RECIPE, other.cell.name, *hits))
        if comparisons:
            found.append(Family(title, holm(comparisons)))
    return found


def section(summaries: list[Summary]) -> list[str]:
    """The report's corrected verdicts (for the confirmation and the full-data phase)."""
    found = families(summaries)
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
