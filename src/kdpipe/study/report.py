"""The study's report: a Markdown table, a bar plot with error bars, and the results as JSON and CSV.

Everything here is computed from the runs' result files alone, so a study run elsewhere (a lent
GPU, tracking off) reports the same here. Means and sample standard deviations are over seeds;
no seed is dropped and nothing is selected on the test split.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdpipe.config import Params
from kdpipe.evaluation.plots import save_png
from kdpipe.infra.files import REPORT_FILE, atomic_write_bytes, write_json
from kdpipe.study import budget, confirmed, diverged, paired, robustness_comparison, stability, targets, tuning
from kdpipe.study.plan import Plan
from kdpipe.study.summary import Summary, pct, summarise, table

PLOT_FILE = "study.png"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CSV_FIELDS = (
    "cell",
    "seed",
    "data_seed",
    "method",
    "teacher_arch",
    "test_top1",
    "val_top1",
    "test_corrupted_top1",
    "test_int8_top1",
    "epochs",
    "transfer_images",
    "train_seconds",
    "images_per_s",
    "wall_seconds",
    "device",
    "threads",
    diverged.DIVERGED,
)


def _gap_rows(
    summaries: list[Summary], teachers: dict[str, dict[str, Any]], teacher_archs: dict[str, str]
) -> list[list[str]]:
    """kd and srd per teacher, small to large; none when the study ran no gap cell (its kd and srd are in the table)."""
    if not any(s.cell.gap_role for s in summaries):
        return []
    by_name = {s.cell.name: s for s in summaries}
    rows = []
    for role in ("small", "main", "large"):
        kd, srd = (by_name.get(m if role == "main" else f"gap_{role}_{m}") for m in ("kd", "srd"))
        if role != "main" and teacher_archs[role] == teacher_archs["main"]:
            continue
        if kd is None and srd is None:
            continue
        t = teachers.get(role, {})
        cells = [f"{pct(s.mean('test_top1'))} ± {pct(s.std('test_top1'))}" if s else "-" for s in (kd, srd)]
        diff = "-"
        if kd and srd:
            found = paired.paired_difference(srd, kd)
            diff = (
                found.verdict()
                if found
                else f"{100 * (srd.mean('test_top1') - kd.mean('test_top1')):+.2f} (no interval)"
            )
        params = f"{t['parameters']:,}" if "parameters" in t else "?"
        top1 = pct(t["test_top1"]) if "test_top1" in t else "?"
        label = "main = large" if role == "main" and teacher_archs["large"] == teacher_archs["main"] else role
        rows.append([f"{label}: {teacher_archs[role]}", params, top1, *cells, diff])
    return rows


def _compute(runs: list[dict[str, Any]]) -> str:
    """How many runs, how long they took and where: summed per run, and from the first start to the last finish
    (which includes any pause between an interrupted study and its continuation)."""
    ends = [datetime.strptime(r["finished_at"], "%Y-%m-%dT%H:%M:%S%z") for r in runs]
    starts = [end - timedelta(seconds=r["wall_seconds"]) for end, r in zip(ends, runs, strict=True)]
    where = sorted({r.get("machine", "machine not recorded") for r in runs})
    return (
        f"- compute: {len(runs)} runs, {sum(r['wall_seconds'] for r in runs) / 3600:.2f} h summed over runs "
        f"(training and measuring), {(max(ends) - min(starts)).total_seconds() / 3600:.2f} h from the first start "
        f"to the last finish; {'; '.join(where)}"
    )


def _images(subset: int | None) -> str:
    return "the whole train split" if subset is None else f"a fixed sample of {subset:,} train-split images"


def _replicates(plan: Plan) -> str:
    seeds = f"seeds {', '.join(map(str, plan.seeds))}"
    if plan.data_seeds == (None,):
        return seeds
    avoid = f", none holding an image of data seed {plan.excluding}'s draw" if plan.excluding is not None else ""
    if plan.paired:
        return f"{len(plan.seeds)} independent pairs (data seed, seed) {plan.replicates()}{avoid} (train.subset_seed)"
    return f"{seeds} on each transfer set drawn by data seed {', '.join(map(str, plan.data_seeds))} (train.subset_seed)"


def markdown(
    study_id: str,
    base: Params,
    plan: Plan,
    summaries: list[Summary],
    teachers: dict[str, dict[str, Any]],
    runs: list[dict[str, Any]],
    command: str | None,
) -> str:
    t, teacher_archs = base.train, plan.archs
    main_t = teachers.get("main", {})
    scored = diverged.scored(runs)
    devices, shas = sorted({r["device"] for r in scored}), sorted({r["data_sha256"][:12] for r in scored})
    lines = [
        f"# kdpipe study {study_id}",
        "",
        f"- data: {base.data.source} (sha256 {', '.join(shas)}), student {base.student.arch}, teacher "
        f"{main_t.get('arch', base.teacher.arch)} (test top-1 {pct(main_t['test_top1']) if main_t else '?'} %)",
        f"- budget: {t.epochs} epochs over {_images(t.subset)}, batch {t.batch_size}, "
        f"{t.optimizer} lr {t.lr} {t.schedule}; "
        f"{_replicates(plan)}; device {', '.join(devices)}",
        "- top-1 in %, mean ± sample std over seeds on the test split; val is the held-out validation split; "
        "train s and images/s are the training loop alone, per run",
    ]
    lines.append(_compute(runs))
    if command:
        lines.append(f"- reproduce: `{command}`")
    int8 = all("test_int8_top1" in r for s in summaries for r in s.runs)  # studies from before the export have none
    rows = [
        [
            "cell",
            "what it changes",
            "test top-1",
            "Δ vs scratch",
            *(["ONNX int8 test top-1"] if int8 else []),
            "val top-1",
            "train s",
            "images/s",
            "n",
        ]
    ]
    scratch = next((s for s in summaries if s.cell.name == "scratch"), None)
    for s in _main(summaries):
        delta = (
            "-"
            if scratch is None or s is scratch
            else f"{100 * (s.mean('test_top1') - scratch.mean('test_top1')):+.2f}"
        )
        rows.append(
            [
                s.cell.name,
                s.cell.what,
                f"{pct(s.mean('test_top1'))} ± {pct(s.std('test_top1'))}",
                delta,
                *([f"{pct(s.mean('test_int8_top1'))} ± {pct(s.std('test_int8_top1'))}"] if int8 else []),
                f"{pct(s.mean('val_top1'))} ± {pct(s.std('val_top1'))}",
                f"{s.mean('train_seconds'):.1f}",
                f"{s.mean('images_per_s'):,.0f}",
                str(len(s.runs)),
            ]
        )
    lines += ["", *table(rows)] if len(rows) > 1 else []
    main_cells = [s for s in summaries if not s.cell.gap_role]
    lines += confirmed.section(summaries) if plan.corrected else paired.section(main_cells)
    lines += tuning.section(tuning.choose(summaries, diverged.cells(plan.cells, runs)))
    lines += budget.section(summaries)
    lines += robustness_comparison.section(
        {s.cell.name: s.runs for s in summaries if not s.cell.gap_role}, teachers.get("main", {})
    )
    gap = _gap_rows(summaries, teachers, teacher_archs)
    if gap:
        head = ["teacher", "parameters", "teacher top-1", "kd", "srd", "srd - kd (paired, 95 % t-interval)"]
        lines += [
            "",
            f"Capacity gap (student {base.student.arch}, test top-1 %, mean ± std):",
            "",
            *table([head, *gap]),
        ]
    lines += [] if plan.corrected else targets.section(summaries)  # the corrected verdicts replace its t-intervals
    return "\n".join(lines) + "\n"


def _main(summaries: list[Summary]) -> list[Summary]:
    """The cells of the main table and bar plot: not a gap, grid or budget cell."""
    return [s for s in summaries if not (s.cell.gap_role or tuning.is_tuning(s) or budget.is_budget(s))]


def _gap_group(summaries: list[Summary]) -> list[Summary]:
    """kd and srd by teacher, small to large; the study's own kd and srd are the middle teacher."""
    if not any(s.cell.gap_role for s in summaries):
        return []
    order = {f"gap_small_{m}": i for i, m in enumerate(("kd", "srd"))}
    order |= {"kd": 2, "srd": 3, "gap_large_kd": 4, "gap_large_srd": 5}
    return sorted((s for s in summaries if s.cell.name in order), key=lambda s: order[s.cell.name])


def _bars(ax: Any, group: list[Summary], labels: list[str], title: str, scratch: Summary | None) -> None:
    means = [100 * s.mean("test_top1") for s in group]
    stds = [100 * s.std("test_top1") for s in group]
    colors = {"scratch": "tab:gray", "srd": "tab:blue"}
    ax.bar(
        range(len(group)), means, yerr=stds, capsize=4, color=[colors.get(s.cell.method, "tab:orange") for s in group]
    )
    ax.set_xticks(range(len(group)), labels, rotation=45, ha="right", fontsize=8)
    low = min(m - s for m, s in zip(means, stds, strict=True))
    high = max(m + s for m, s in zip(means, stds, strict=True))
    ax.set_ylim(low - 0.5, high + 0.3)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title, fontsize=10)
    if scratch is not None:
        ax.axhline(100 * scratch.mean("test_top1"), color="tab:gray", linestyle="--", linewidth=1)


def plot(path: Path, summaries: list[Summary]) -> None:
    """Bars of mean test top-1 with ±1 std error bars; the scratch mean as a dashed line."""
    scratch = next((s for s in summaries if s.cell.name == "scratch"), None)
    main = _main(summaries)
    gap = _gap_group(summaries)
    panels = [(main, [s.cell.name for s in main], "recipe, baselines and ablations")] if main else []
    if gap:
        panels.append((gap, [f"{s.cell.method} ← {s.teacher_arch}" for s in gap], "capacity gap"))
    fig = Figure(figsize=(5 + 3.5 * len(panels), 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=[max(2, len(g)) for g, _, _ in panels])
    for ax, (group, labels, title) in zip(axes[0], panels, strict=True):
        _bars(ax, group, labels, title, scratch)
    fig.tight_layout()
    save_png(fig, path, dpi=120, bbox_inches=None)


def results_csv(runs: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(runs)
    return buf.getvalue().encode()


def write_report(
    study_dir: Path,
    study_id: str,
    base: Params,
    plan: Plan,
    runs: list[dict[str, Any]],
    teachers: dict[str, dict[str, Any]],
    command: str | None,
    with_plot: bool = True,
) -> dict[str, Path]:
    """Write the table, the plot and the results; return their paths."""
    summaries = summarise(list(plan.cells), runs, plan.archs)
    scratch = next((s for s in summaries if s.cell.name == "scratch"), None)
    files = {"report": study_dir / REPORT_FILE, "json": study_dir / RESULTS_JSON, "csv": study_dir / RESULTS_CSV}
    text = markdown(study_id, base, plan, summaries, teachers, runs, command)
    atomic_write_bytes(files["report"], text.encode())
    write_json(
        files["json"],
        {
            "study_id": study_id,
            "command": command,
            "seeds": list(plan.seeds),
            "data_seeds": list(plan.data_seeds),
            "teachers": teachers,
            "teacher_archs": plan.archs,
            "cells": [s.as_dict(scratch) for s in summaries],
            "runs": runs,
        },
    )
    atomic_write_bytes(files["csv"], results_csv(runs))
    choices = tuning.choose(summaries, diverged.cells(plan.cells, runs))
    if choices:
        files["tuning"] = study_dir / tuning.TUNING_FILE
        tuning.write_choices(files["tuning"], choices)
    if with_plot and (_main(summaries) or _gap_group(summaries)):
        files["plot"] = study_dir / PLOT_FILE
        plot(files["plot"], summaries)
    if with_plot and budget.plot(study_dir / budget.PLOT_FILE, summaries):
        files["budget"] = study_dir / budget.PLOT_FILE
    if with_plot and stability.plot(study_dir / stability.STABILITY_FILE, {s.cell.name: s.runs for s in summaries}):
        files["stability"] = study_dir / stability.STABILITY_FILE
    return files
