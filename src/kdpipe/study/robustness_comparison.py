"""The study's robustness comparison: does the recipe's student keep the teacher's robustness better
than kd's and scratch's?

Per run, on the corruption suite of the test split (``validate.corruptions``): the mean corrupted
top-1, and the robustness retention (student corrupted / clean top-1) / (teacher corrupted / clean
top-1) with the study's teacher as the reference (1: as robust as the teacher, relative to its
clean accuracy). srd is compared with each baseline by paired differences over seeds (the same
seed and transfer set on both sides) with a two-sided 95 % Student-t interval; a difference whose
interval contains zero is reported as "no difference shown". Nothing is chosen on these figures.
"""

from __future__ import annotations

import statistics
from typing import Any

from kdpipe.study.cells import BASELINES
from kdpipe.study.paired import CONFIDENCE, paired_interval
from kdpipe.study.summary import pair

LEVEL = CONFIDENCE
KEYS = (("test_corrupted_top1", "mean corrupted top-1", 100.0, "points"), ("retention", "retention", 1.0, ""))


def retention(run: dict[str, Any], teacher: dict[str, Any]) -> float:
    """(run corrupted / clean test top-1) / (teacher corrupted / clean test top-1)."""
    return (run["test_corrupted_top1"] / run["test_top1"]) / (teacher["test_corrupted_top1"] / teacher["test_top1"])


def _by_seed(runs: list[dict[str, Any]], teacher: dict[str, Any]) -> dict[tuple[int, int], dict[str, float]]:
    return {
        pair(r): {
            "test_top1": r["test_top1"],
            "test_corrupted_top1": r["test_corrupted_top1"],
            "retention": retention(r, teacher),
        }
        for r in runs
    }


def _verdict(name: str, lo: float, hi: float) -> str:
    if lo > 0:
        return f"srd higher than {name}"
    if hi < 0:
        return f"srd lower than {name}"
    return "no difference shown (the interval contains 0)"


def section(cells: dict[str, list[dict[str, Any]]], teacher: dict[str, Any]) -> list[str]:
    """Markdown lines: each method's figures (mean ± std over seeds) and srd's paired differences to each
    baseline; empty when the runs or the teacher carry no corruption figures (a study from before, or
    ``validate.corruptions: none``)."""
    measured = {
        name: runs
        for name, runs in cells.items()
        if runs and all("test_corrupted_top1" in r for r in runs) and name in ("srd", *BASELINES)
    }
    if "srd" not in measured or "test_corrupted_top1" not in teacher:
        return []
    figures = {name: _by_seed(runs, teacher) for name, runs in measured.items()}
    lines = [
        "",
        "Robustness (corruption suite on the test split; retention: teacher = 1; mean ± std over seeds):",
        "",
        "| cell | test top-1 | mean corrupted top-1 | retention | n |",
        "|---|---|---|---|---|",
        f"| teacher ({teacher.get('arch', '?')}) | {100 * teacher['test_top1']:.2f} | "
        f"{100 * teacher['test_corrupted_top1']:.2f} | 1.000 | 1 |",
    ]
    for name, by_seed in figures.items():
        cols = [[v[key] for v in by_seed.values()] for key in ("test_top1", "test_corrupted_top1", "retention")]
        std = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in cols]
        lines.append(
            f"| {name} | {100 * statistics.fmean(cols[0]):.2f} ± {100 * std[0]:.2f} | "
            f"{100 * statistics.fmean(cols[1]):.2f} ± {100 * std[1]:.2f} | "
            f"{statistics.fmean(cols[2]):.3f} ± {std[2]:.3f} | {len(by_seed)} |"
        )
    lines += ["", f"Paired over (data seed, seed) runs, srd minus each baseline, {LEVEL:.0%} t-interval:", ""]
    for baseline in (b for b in BASELINES if b in figures):
        seeds = sorted(set(figures["srd"]) & set(figures[baseline]))
        if len(seeds) < 2:
            lines.append(f"- srd - {baseline}: fewer than two paired runs, no interval")
            continue
        for key, label, scale, unit in KEYS:
            mean, lo, hi = paired_interval(
                [figures["srd"][s][key] for s in seeds], [figures[baseline][s][key] for s in seeds]
            )
            spec = ".2f" if scale == 100.0 else ".3f"
            lines.append(
                f"- srd - {baseline}, {label}: {scale * mean:+{spec}} [{scale * lo:+{spec}}, {scale * hi:+{spec}}]"
                f"{' ' + unit if unit else ''} over {len(seeds)} pairs: {_verdict(baseline, lo, hi)}"
            )
    return lines
