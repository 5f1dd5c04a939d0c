"""The data-budget curve: with how much data does distillation pay, and which method?

scratch, kd and srd, each at params.yaml's settings (after ``kdpipe study --tune``: the tuned ones),
train on transfer sets of 2k, 5k, 10k and 20k images and on the whole train split, at equal steps:
every run takes about the optimiser steps of the default budget, 10 epochs of 10k images
(``STEP_IMAGES`` = 100k images), so a larger transfer set means fewer passes over more distinct
images, not more compute. Epochs = round(100k / size): 50, 20, 10, 5; the whole split (55k images
of Fashion-MNIST) gets 2 epochs, 110k images.

The gain of a method over scratch at each size is the paired difference of test top-1 over the
(data seed, seed) pairs, with its 95 % t-interval (:mod:`kdpipe.study.paired`).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdpipe.evaluation.plots import save_png
from kdpipe.study.cells import Cell
from kdpipe.study.paired import PairedDifference, paired_difference
from kdpipe.study.summary import Summary, pct, table

PREFIX = "budget_"
SIZES: tuple[int | None, ...] = (2000, 5000, 10000, 20000, None)
"""Transfer-set sizes; None: the whole train split."""
STEP_IMAGES = 100_000
ALL_EPOCHS = 2
METHODS = ("scratch", "kd", "srd")
PLOT_FILE = "budget.png"


def epochs(size: int | None) -> int:
    return ALL_EPOCHS if size is None else round(STEP_IMAGES / size)


def _label(size: int | None) -> str:
    return "all" if size is None else f"{size // 1000}k"


def budget_cells() -> tuple[Cell, ...]:
    """Each method at each size, smallest transfer set first."""
    return tuple(
        Cell(
            f"{PREFIX}{_label(n)}_{m}",
            (f"method.name={m}", f"train.subset={'null' if n is None else n}", f"train.epochs={epochs(n)}"),
            f"{m} on {'the whole train split' if n is None else f'{n:,} images'}, {epochs(n)} epochs",
        )
        for n in SIZES
        for m in METHODS
    )


def is_budget(summary: Summary) -> bool:
    return summary.cell.name.startswith(PREFIX)


def _grid(summaries: list[Summary]) -> dict[int | None, dict[str, Summary]]:
    """The summaries by size then method, for the sizes that have a scratch cell and at least one other."""
    by_name = {s.cell.name: s for s in summaries}
    grid = {
        n: {m: by_name[f"{PREFIX}{_label(n)}_{m}"] for m in METHODS if f"{PREFIX}{_label(n)}_{m}" in by_name}
        for n in SIZES
    }
    return {n: row for n, row in grid.items() if "scratch" in row and len(row) > 1}


def _images(row: dict[str, Summary]) -> float:
    return row["scratch"].mean("transfer_images")


def _interval(d: PairedDifference | None) -> str:
    return "-" if d is None else f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def gains(summaries: list[Summary]) -> dict[int | None, dict[str, PairedDifference | None]]:
    """Per size: kd - scratch, srd - scratch and srd - kd, paired."""
    out = {}
    for n, row in _grid(summaries).items():
        pairs = {"kd": ("kd", "scratch"), "srd": ("srd", "scratch"), "srd - kd": ("srd", "kd")}
        out[n] = {
            k: paired_difference(row[a], row[b]) if a in row and b in row else None for k, (a, b) in pairs.items()
        }
    return out


def section(summaries: list[Summary]) -> list[str]:
    """The curve as a table: each method's test top-1 and the paired gains, per transfer-set size."""
    grid, gain = _grid(summaries), gains(summaries)
    if not grid:
        return []
    rows = [["transfer set", "images", "epochs", *METHODS, "kd - scratch", "srd - scratch", "srd - kd"]]
    for n, row in grid.items():
        cells = [
            f"{pct(row[m].mean('test_top1'))} ± {pct(row[m].std('test_top1'))}" if m in row else "-" for m in METHODS
        ]
        rows.append(
            [
                _label(n),
                f"{_images(row):,.0f}",
                str(epochs(n)),
                *cells,
                *(_interval(gain[n][k]) for k in ("kd", "srd", "srd - kd")),
            ]
        )
    head = (
        f"Data budget (equal steps: about {STEP_IMAGES:,} training images per run; test top-1 %, mean ± std; "
        "differences in points, paired over (data seed, seed), [95 % t-interval]):"
    )
    return ["", head, "", *table(rows)]


def plot(path: Path, summaries: list[Summary]) -> bool:
    """Gain over scratch against the transfer-set size (log scale), kd and srd, with 95 % intervals; False when
    the study has no budget cells."""
    grid, gain = _grid(summaries), gains(summaries)
    if not grid:
        return False
    fig = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for method, color in (("kd", "tab:orange"), ("srd", "tab:blue")):
        points = [(_images(grid[n]), d) for n in grid if (d := gain[n][method]) is not None]
        if not points:
            continue
        xs = [x for x, _ in points]
        means = [100 * d.mean for _, d in points]
        errors = [[100 * (d.mean - d.low) for _, d in points], [100 * (d.high - d.mean) for _, d in points]]
        ax.errorbar(xs, means, yerr=errors, marker="o", capsize=4, color=color, label=f"{method} - scratch")
    ax.axhline(0.0, color="tab:gray", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(
        [_images(row) for row in grid.values()],
        [f"{_images(row) / 1000:g}k" + (" (all)" if n is None else "") for n, row in grid.items()],
    )
    ax.set_xlabel("transfer-set size (images; equal steps)")
    ax.set_ylabel("test top-1 gain over scratch (points, 95 % CI)")
    ax.set_title("With how much data does distillation pay?", fontsize=10)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path, dpi=120, bbox_inches=None)
    return True
