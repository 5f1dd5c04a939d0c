"""The latency figure of repeated probes: their median, probed again before a limit refuses it.

One probe can be slowed many times over by a neighbour on a shared machine (one ``validate`` measured 124 ms at
batch 1 where its identical rerun measured 0.85 ms), so the figure the gate reads is settled this way:

1. ``probes`` fresh probe processes; each figure is the median over them (each probe's own p50 is already the
   median of ``export.repeats`` timed calls);
2. when the median p50 is over ``limit``, ``probes + 1`` more are run and the median is taken over all
   ``2 * probes + 1``: one slow probe of three, or of seven, cannot fail the gate, a model truly over the limit
   still does;
3. the figures keep the spread of the probes' p50: ``probes``, ``p50_ms_min`` and ``p50_ms_max``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

Probe = Callable[[], dict[str, float]]


def settle(probe: Probe, probes: int, limit: float | None) -> dict[str, float]:
    """Run ``probe`` as the rules above say and return the median of each figure, with the p50 spread."""
    runs = [probe() for _ in range(probes)]
    if limit is not None and statistics.median(r["p50_ms"] for r in runs) > limit:
        runs += [probe() for _ in range(probes + 1)]
    p50s = [r["p50_ms"] for r in runs]
    return {
        **{key: statistics.median(r[key] for r in runs) for key in runs[0]},
        "probes": float(len(runs)),
        "p50_ms_min": min(p50s),
        "p50_ms_max": max(p50s),
    }
