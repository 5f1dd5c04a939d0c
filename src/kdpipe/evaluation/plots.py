"""PNG figures for the MLflow UI: learning curves of a training run and a confusion matrix.

Drawn with matplotlib's object API on the Agg canvas: no pyplot state, no display, safe in worker
processes and threads.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdpipe.infra.files import atomic_write_bytes

_PANELS = (
    ("losses", lambda k: k == "loss" or k.startswith("loss_")),
    ("accuracy", lambda k: k in ("train_acc", "val_acc")),
    ("learning rate", lambda k: k == "lr"),
    ("projector effective rank", lambda k: k == "projector_effective_rank"),
)


def save_png(fig: Figure, path: Path, *, dpi: int = 110, bbox_inches: str | None = "tight") -> Path:
    """Render ``fig`` on its own Agg canvas and write it atomically."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=bbox_inches)
    atomic_write_bytes(path, buf.getvalue())
    return path


def learning_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """One panel per family of per-epoch values that the history holds."""
    keys = [k for rec in history for k in rec]
    panels = [(name, [k for k in dict.fromkeys(keys) if pick(k)]) for name, pick in _PANELS]
    panels = [(name, ks) for name, ks in panels if ks]
    fig = Figure(figsize=(4.2 * len(panels), 3.4))
    epochs = [rec["epoch"] for rec in history]
    for i, (name, ks) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for k in ks:
            ax.plot(epochs, [rec.get(k, float("nan")) for rec in history], marker="o", label=k)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(ks) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def confusion_matrix(matrix: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    """Rows are true classes, columns predictions; counts written in the cells."""
    n = len(classes)
    size = max(4.0, 0.55 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = list(range(n))
    ax.set_xticks(ticks, labels=classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(ticks, labels=classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        top = max((max(row) for row in matrix), default=0)
        for r, row in enumerate(matrix):
            for c, count in enumerate(row):
                ax.text(
                    c,
                    r,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if count > top / 2 else "black",
                )
    if title:
        ax.set_title(title)
    return save_png(fig, path)


def corruption_heatmap(
    student: dict[str, dict[int, float]], teacher: dict[str, dict[int, float]], path: Path, title: str = ""
) -> Path:
    """Student minus teacher top-1 per corruption (rows) and severity (columns), in points.

    Red: the student loses more."""
    names = sorted(student)
    severities = sorted({s for by_s in student.values() for s in by_s})
    diff = [[100 * (student[n][s] - teacher[n][s]) for s in severities] for n in names]
    bound = max((abs(v) for row in diff for v in row), default=1.0) or 1.0
    fig = Figure(figsize=(1.2 + 0.9 * len(severities), 1.0 + 0.32 * len(names)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(diff, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.05, label="student - teacher top-1 (points)")
    ax.set_xticks(range(len(severities)), labels=[f"severity {s}" for s in severities], fontsize=7)
    ax.set_yticks(range(len(names)), labels=names, fontsize=7)
    for r, row in enumerate(diff):
        for c, value in enumerate(row):
            ax.text(c, r, f"{value:+.1f}", ha="center", va="center", fontsize=6)
    if title:
        ax.set_title(title, fontsize=8)
    return save_png(fig, path)
