"""``kdpipe study``'s command line: its options, and the phase, cells, seeds and directory they select."""

from __future__ import annotations

import argparse
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import ConfigError
from kdpipe.study import phases
from kdpipe.study.orchestrator import run_study
from kdpipe.study.phases import BUDGET, CONFIRM, FULL, GAP, MAIN, TUNE, selection
from kdpipe.study.plan import SMALL_TEACHER
from kdpipe.study.tune_rounds import run_tuning


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        help=f"study directory (default: {MAIN.directory}; with --tune {TUNE.directory}, with "
        f"--confirm {CONFIRM.directory}, --gap {GAP.directory}, --budget {BUDGET.directory}, --full {FULL.directory})",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="training seeds (default: 0 1 2; --tune 0 1; --confirm 3-10; --gap, --budget 3 4 5; --full 3-7)",
    )
    p.add_argument(
        "--data-seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="run every seed on each transfer set "
        "these draw (train.subset_seed; default: the one data.seed draws; with --gap and --budget 1); with "
        "--confirm 1-8, the i-th with the i-th seed only, each without the tuning set's images",
    )
    p.add_argument("--cells", nargs="+", metavar="CELL", help="only these cells (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel worker processes (default: 1)")
    p.add_argument(
        "--small-teacher", default=SMALL_TEACHER, help=f"capacity gap: small teacher (default: {SMALL_TEACHER})"
    )
    p.add_argument(
        "--large-teacher",
        help="capacity gap: large teacher (default: the study's own teacher, teacher.arch; with --gap cnn64_fc1024)",
    )
    p.add_argument("--no-gap", action="store_true", help="leave out the capacity-gap sweep")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    phases.add_arguments(p)


def run_from_args(params: Params, args: argparse.Namespace, command: str | None = None) -> dict[str, Any]:
    cells, seeds, gap, data_seeds = selection(args)
    study_dir = phases.directory(args)
    join = phases.joined(args)
    if join is not None:
        phases.check_tuned(params, join)
    phase = phases.phase_of(args)
    if phase is FULL:
        cells, params = phases.full_cells(join), whole_split(params)
    if phase is TUNE:
        if args.data_seeds:
            raise ConfigError("--tune chooses on data.seed's transfer set; leave out --data-seeds")
        plot = not args.no_plot
        return run_tuning(params, study_dir, seeds=seeds, jobs=args.jobs, plot=plot, command=command, join=join)
    return run_study(
        params,
        study_dir,
        seeds=seeds,
        cells=cells,
        jobs=args.jobs,
        small_teacher=args.small_teacher,
        large_teacher=phases.large_teacher(args),
        gap=gap,
        plot=not args.no_plot,
        command=command,
        data_seeds=data_seeds,
        join=join,
        phase=phase.name,
        paired=phase.paired,
        excluding=params.data.seed if phase.avoids_tuning else None,
        corrected=phase.corrected,
    )


def whole_split(params: Params) -> Params:
    """``params`` with ``train.subset`` null: every run trains on the whole train split."""
    return params.model_copy(update={"train": params.train.model_copy(update={"subset": None})})
