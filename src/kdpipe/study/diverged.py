"""A run whose loss stopped being finite is a result, not a failure to retry.

The same settings, transfer set and seed diverge again, so such a run is kept like a finished one (by its
fingerprint) with the error and no scores. The tuning grids rule its setting out and report it: finding the
settings a method cannot stand at the shared learning rate (fitnet's largest feature weights) is part of what a
grid is for. Every other phase stops and names it, because its comparisons need a score from every run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kdpipe.infra.errors import KdpipeError
from kdpipe.study.cells import Cell

DIVERGED = "diverged"
"""The key a kept run's result holds the error under."""


def result(own: dict[str, Any], error: str, wall_seconds: float, machine: str) -> dict[str, Any]:
    """A diverged run's ``result.json``: what names the run (``own``), the error, and what it cost."""
    return {
        **own,
        DIVERGED: error,
        "test_top1": None,
        "val_top1": None,
        "wall_seconds": wall_seconds,
        "machine": machine,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def scored(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that finished with scores."""
    return [r for r in results if DIVERGED not in r]


def runs(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs kept as diverged."""
    return [r for r in results if DIVERGED in r]


def cells(catalogue: Iterable[Cell], results: Iterable[dict[str, Any]]) -> list[Cell]:
    """The cells of ``catalogue`` with at least one diverged run: a setting that diverges under any seed is out."""
    out = {r["cell"] for r in runs(results)}
    return [c for c in catalogue if c.name in out]


def describe(results: Iterable[dict[str, Any]]) -> str:
    """One line naming each diverged run and its error."""
    return "; ".join(f"{r['id']}: {r[DIVERGED]}" for r in runs(results))


def refuse(results: Iterable[dict[str, Any]]) -> None:
    """Stop on a diverged run, naming each. Every phase but the tuning calls it, since their comparisons need a
    score from every run; it is called where the report is written, so the local study and the Kubeflow study's
    report step both stop."""
    lost = runs(results)
    if lost:
        raise KdpipeError(
            f"study: {len(lost)} run(s) diverged ({describe(lost)}); they are kept as diverged, so rerunning "
            "does not retry them: change their settings"
        )
