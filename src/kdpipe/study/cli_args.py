"""``kdpipe study``'s command line: its options, and the phase, cells, seeds and directory they select."""

from __future__ import annotations

import argparse
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import ConfigError
from kdpipe.study import phases
from kdpipe.study.orchestrator import run_study
from kdpipe.study.phases import BUDGET, CONFIRM, GAP, MAIN, TUNE, selection
from kdpipe.study.plan import SMALL_TEACHER
from kdpipe.study.tune_rounds import run_tuning


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        help=f"study directory (default: {MAIN.directory}; with --tune {TUNE.directory}, with "
        f"--confirm {CONFIRM.directory}, --gap {GAP.directory}, --budget {BUDGET.directory})",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="training seeds (default: 0 1 2; with --tune 0 1; with --confirm 3-7; with --gap and --budget 3 4 5)",
    )
    p.add_argument(
        "--data-seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="run every seed on each transfer set "
        "these draw (train.subset_seed; default: the one data.seed draws; with --confirm 1 2, with --gap "
        "and --budget 1)",
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
    if phases.phase_of(args) is TUNE:
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
        phase=phases.phase_of(args).name,
    )
