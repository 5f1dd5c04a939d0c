"""Paired differences between cells run on the same (data seed, seed) pairs, with 95 % intervals.

Two cells trained on the same transfer set, from the same initial weights and views, share most of
their run-to-run variance; their per-pair difference ``d_i = a_i - b_i`` does not. The interval is
the two-sided paired Student t-interval over the pairs::

    mean(d) +- t(0.975, n - 1) * sd(d) / sqrt(n)        (sd: the sample standard deviation)

A verdict claims a difference only when the interval excludes zero and says "no difference shown"
otherwise: a wide interval is not evidence of equality either. The best baseline is the one with
the highest mean val top-1, so choosing it reads no test figure.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

from kdpipe.study.cells import BASELINES
from kdpipe.study.summary import Summary, pair

CONFIDENCE = 0.95


def paired_interval(a: list[float], b: list[float], level: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of a - b over pairs and its two-sided Student-t interval at ``level``; needs two pairs or more."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs)
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class PairedDifference:
    a: str
    b: str
    n: int
    mean: float
    low: float
    high: float

    def verdict(self) -> str:
        """What the interval supports, in top-1 points; no more."""
        span = (
            f"{100 * self.mean:+.2f} points, 95 % CI [{100 * self.low:+.2f}, {100 * self.high:+.2f}], n={self.n} pairs"
        )
        if self.low > 0:
            return f"{self.a} above {self.b}: {span}"
        if self.high < 0:
            return f"{self.a} below {self.b}: {span}"
        return f"no difference shown between {self.a} and {self.b} (the interval contains 0): {span}"


def paired_difference(a: Summary, b: Summary, key: str = "test_top1") -> PairedDifference | None:
    """``a - b`` of ``key`` over the pairs both ran; None with fewer than two."""
    a_values = {pair(r): float(r[key]) for r in a.runs}
    b_values = {pair(r): float(r[key]) for r in b.runs}
    shared = sorted(a_values.keys() & b_values.keys())
    if len(shared) < 2:
        return None
    mean, low, high = paired_interval([a_values[p] for p in shared], [b_values[p] for p in shared])
    return PairedDifference(a.cell.name, b.cell.name, len(shared), mean, low, high)


def section(summaries: list[Summary]) -> list[str]:
    """srd minus each baseline as verdict lines, the best one (highest val top-1) marked as such."""
    by_name = {s.cell.name: s for s in summaries}
    srd = by_name.get("srd")
    baselines = [by_name[b] for b in BASELINES if b in by_name]
    if srd is None or not baselines:
        return []
    best = max(baselines, key=lambda s: s.mean("val_top1"))
    lines = []
    for other in baselines:
        label = " (the best baseline on val)" if other is best else ""
        found = paired_difference(srd, other)
        lines.append(
            f"- srd - {other.cell.name}{label}: " + (found.verdict() if found else "fewer than two paired runs")
        )
    head = "Test top-1, srd minus each baseline, paired over (data seed, seed) runs, 95 % paired t-interval:"
    return ["", head, *lines]
