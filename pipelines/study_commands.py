"""`kdpipe study --kubeflow compile | submit | run-local`: the study as a Kubeflow fan-out.

It joins ``kdpipe study`` through the ``kdpipe_study_commands`` entry point (pyproject.toml), as
``kdpipe pipeline`` does, so the library never imports ``pipelines``. The plan is checked by the
same code as a local study's; the cells, seeds and teachers are then fixed in the compiled graph.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from kdpipe.config import Params

ACTIONS = ("compile", "submit", "run-local")
DEFAULT_PARALLELISM = 8
"""Runs at once on a cluster, one GPU pod each (run-local: ``--jobs``)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from kdpipe_pipelines.commands import DEFAULT_PIPELINE_ROOT  # not the pipeline: kfp would load with every command

    g = p.add_argument_group("Kubeflow", "run the study as a Kubeflow pipeline instead of worker processes here")
    g.add_argument(
        "--kubeflow",
        choices=ACTIONS,
        help="compile the study pipeline, submit it to a cluster, or run it here with kfp.local",
    )
    g.add_argument(
        "--parallelism", type=int, help=f"runs at once (default: {DEFAULT_PARALLELISM} pods; run-local: --jobs)"
    )
    g.add_argument(
        "-o", "--output", type=Path, help="compile: where to write it (default: artifacts/study_pipeline.yaml)"
    )
    g.add_argument(
        "--data-cache-pvc", help="compile, submit: mount this PVC for the data, teacher-output cache and checkpoints"
    )
    g.add_argument("--host", help="submit: Kubeflow Pipelines API endpoint, e.g. http://localhost:8080")
    g.add_argument("--experiment", default="kdpipe", help="submit: Kubeflow experiment (default: kdpipe)")
    g.add_argument("--run-name", help="submit: display name of the run")
    g.add_argument("--data-ref", help="submit, run-local: pvc:/path, s3://bucket/prefix or dvc+<repo>@<rev>#<path>")
    g.add_argument(
        "--accelerator-type",
        help="compile, submit: Kubernetes GPU resource of each task that trains (default: nvidia.com/gpu)",
    )
    g.add_argument("--credentials-secret", help="submit: Kubernetes secret with the S3 and MLflow credentials")
    g.add_argument(
        "--pipeline-root",
        type=Path,
        default=DEFAULT_PIPELINE_ROOT,
        help=f"run-local: where the run's artifacts go (default: {DEFAULT_PIPELINE_ROOT})",
    )


def _options(params: Params, args: argparse.Namespace, command: str, parallelism: int) -> Any:
    from kdpipe.infra.errors import ConfigError
    from kdpipe.study.phases import large_teacher, phase_of, selection
    from kdpipe.study.plan import make_plan
    from kdpipe_pipelines.distill_pipeline import Options
    from kdpipe_pipelines.study_pipeline import StudyOptions

    if parallelism < 1:
        raise ConfigError(f"--parallelism: must be at least 1, got {parallelism}")
    if args.join:
        raise ConfigError("--join: a Kubeflow study logs under its own parent run (its id comes from the KFP run)")
    if phase_of(args).name == "full":
        raise ConfigError(
            "--full reads its baseline from the tuning study's choices, which a Kubeflow study cannot join: "
            "run kdpipe study --full on one machine"
        )
    if phase_of(args).name == "tune":
        raise ConfigError(
            "--tune runs in rounds, each built from the last one's choices on val (the shared settings first, then "
            "steps past a grid's ends), which a compiled pipeline cannot do: run kdpipe study --tune on one machine"
        )
    cells, seeds, gap, data_seeds = selection(args)
    plan = make_plan(
        params,
        cells,
        seeds,
        gap=gap,
        small_teacher=args.small_teacher,
        large_teacher=large_teacher(args),
        data_seeds=data_seeds,
        phase=phase_of(args).name,
        paired=phase_of(args).paired,
        excluding=params.data.seed if phase_of(args).avoids_tuning else None,
        corrected=phase_of(args).corrected,
    )
    gpu = {"accelerator_type": args.accelerator_type} if args.accelerator_type else {}
    return StudyOptions(plan, command, parallelism, cluster=Options(args.data_cache_pvc), **gpu)


def run(params: Params, args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Carry out ``kdpipe study --kubeflow ...`` (the CLI has validated ``-c`` and ``-p`` already)."""
    from kdpipe.infra.errors import ConfigError
    from kdpipe.study.threads import cores
    from kdpipe_pipelines.commands import pipeline_arguments
    from kdpipe_pipelines.study_pipeline import COMPILED, build, compile_study

    params_text = Path(args.params).read_text()
    local = args.kubeflow == "run-local"
    default = args.jobs if local else DEFAULT_PARALLELISM
    options = _options(params, args, command, default if args.parallelism is None else args.parallelism)
    arguments = pipeline_arguments(args, params_text)
    arguments.pop("accelerator_type", None)  # compiled in: see StudyOptions
    if args.kubeflow == "compile":
        out = compile_study(args.output or COMPILED, params_text, options)
        print(
            f"wrote {out}: {sum(len(options.plan.runs(r)) for r in options.plan.roles)} runs, "
            f"at most {options.parallelism} at once"
        )
        return {"package": str(out)}
    if local:
        from kdpipe_pipelines.local import run_local

        if params.runtime.num_threads is None:  # share the cores between the runs at once, as --jobs does
            arguments["overrides"].append(f"runtime.num_threads={max(1, cores() // options.parallelism)}")
        run_dir = run_local(build(params_text, options), args.pipeline_root, arguments)
        study = run_dir / "study-report" / "study"
        print((study / "report.md").read_text(), end="")
        print(f"artifacts of the run: {run_dir}\nthe study's report, plot and results: {study}")
        return {"run_dir": str(run_dir), "study_dir": str(study)}
    if not args.host:
        raise ConfigError("--kubeflow submit needs --host, the Kubeflow Pipelines API endpoint")
    from kdpipe.kubeflow import client

    with tempfile.TemporaryDirectory(prefix="kdpipe-study-") as tmp:
        package = compile_study(Path(tmp) / "study_pipeline.yaml", params_text, options)
        run_id = client.submit(args.host, package, arguments, args.experiment, args.run_name)
    print(f"started study run {run_id} in experiment {args.experiment!r}")
    return {"run_id": run_id}
