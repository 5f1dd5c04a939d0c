"""The margins by which srd must beat each baseline in the exploratory phases, judged on the paired 95 % t-interval.

'met' when the interval of the difference lies above the margin, 'NOT met' when it lies below, 'not shown' when it
contains it. The confirmation and the full-data phase give corrected verdicts instead (:mod:`kdpipe.study.confirmed`).
"""

from __future__ import annotations

from kdpipe.study import paired
from kdpipe.study.summary import Summary

TARGETS = {"scratch": 1.0, "kd": 0.3}
"""In top-1 points."""


def _lines(summaries: list[Summary]) -> list[str]:
    by_name = {s.cell.name: s for s in summaries}
    srd = by_name.get("srd")
    lines = []
    for baseline, target in TARGETS.items():
        other = by_name.get(baseline)
        if srd is None or other is None:
            continue
        found = paired.paired_difference(srd, other)
        if found is None:
            lines.append(f"- srd - {baseline}: fewer than two paired runs, nothing shown (target ≥ +{target:.1f})")
            continue
        low, high = 100 * found.low, 100 * found.high
        verdict = (
            "met" if low >= target else "NOT met" if high < target else "not shown (the interval contains the target)"
        )
        lines.append(
            f"- srd - {baseline}: {100 * found.mean:+.2f} points, 95 % CI [{low:+.2f}, {high:+.2f}] "
            f"(target ≥ +{target:.1f}): {verdict}"
        )
    return lines


def section(summaries: list[Summary]) -> list[str]:
    lines = _lines(summaries)
    return ["", "Targets (srd over each baseline, judged on the paired 95 % interval):", *lines] if lines else []
