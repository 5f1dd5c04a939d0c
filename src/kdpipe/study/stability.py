"""Training stability with and without the recipe's parts: learning curves, mean ± std over seeds.

From the epoch records every run keeps (``history`` in its result), one PNG with:
- val top-1 and each loss part (CE, KL, feature) per epoch for srd, srd_no_feat, srd_frozen_proj
  and kd: does the feature term or a trained projector change how training behaves;
- the projector's effective rank per epoch (:func:`kdpipe.training.diagnostics.effective_rank`) for srd,
  whose features are batch-normalised, against srd_norm_none: does BN keep the projector from
  collapsing onto a few directions.

A cell the study did not run is left out of its panel; a panel with no cell is not drawn.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdpipe.evaluation.plots import save_png

STABILITY_FILE = "stability.png"
CURVE_CELLS = ("srd", "srd_no_feat", "srd_frozen_proj", "kd")
RANK_CELLS = ("srd", "srd_norm_none")
PANELS = (
    ("val_acc", "val top-1", CURVE_CELLS),
    ("loss_ce", "CE loss (train)", CURVE_CELLS),
    ("loss_kl", "KL loss (train)", CURVE_CELLS),
    ("loss_feat", "feature loss (train)", CURVE_CELLS),
    ("projector_effective_rank", "projector effective rank", RANK_CELLS),
)


def curve(runs: list[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float]] | None:
    """Epochs, mean and sample std over runs of ``key``; None when no run recorded it."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for record in run["history"]:
            if key in record:
                by_epoch.setdefault(int(record["epoch"]), []).append(float(record[key]))
    if not by_epoch:
        return None
    epochs = sorted(by_epoch)
    values = [by_epoch[e] for e in epochs]
    return epochs, [statistics.fmean(v) for v in values], [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]


def plot(path: Path, cells: dict[str, list[dict[str, Any]]]) -> bool:
    """Write the curves of the cells present; False (and no file) when none of them ran."""
    panels = [
        (key, title, [(name, c) for name in names if name in cells and (c := curve(cells[name], key))])
        for key, title, names in PANELS
    ]
    panels = [p for p in panels if p[2]]
    if not panels:
        return False
    fig = Figure(figsize=(3.6 * len(panels), 3.4))
    FigureCanvasAgg(fig)
    for ax, (_key, title, lines) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for name, (epochs, mean, std) in lines:
            ax.plot(epochs, mean, label=name, linewidth=1.5)
            ax.fill_between(
                epochs,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                alpha=0.2,
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle("mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=110, bbox_inches=None)
    return True
