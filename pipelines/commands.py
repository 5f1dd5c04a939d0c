"""`kdpipe pipeline compile | submit | schedule | run-local | image`: the Kubeflow commands.

They live beside the pipeline, not in the library: kdpipe's CLI finds them through the
``kdpipe_commands`` entry point (pyproject.toml), so ``kdpipe`` never imports ``pipelines``.
The params file (``-c``) and overrides (``-p``) are validated like every other command's, then
travel as the pipeline's ``params_yaml`` and ``overrides`` parameters, so a run on the cluster
uses exactly what was checked here.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdpipe.kubeflow.multinode import TRAINING_APIS
from kdpipe_pipelines.local import RUNNERS

HELP = "the Kubeflow pipeline: compile, submit, schedule, run-local, image"
DEFAULT_PIPELINE_ROOT = Path("artifacts/kfp")
log = logging.getLogger("kdpipe")


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080")
    p.add_argument("--experiment", default="kdpipe", help="Kubeflow experiment (default: kdpipe)")
    p.add_argument("--package", type=Path, help="compiled pipeline (default: pipelines/distill_pipeline.yaml)")
    p.add_argument("--data-ref", help="pvc:/path, s3://bucket/prefix or dvc+<repo>@<rev>#<path> for large data")
    p.add_argument("--accelerator-type", help="Kubernetes GPU resource (default: nvidia.com/gpu)")
    p.add_argument("--accelerator-count", type=int, help="GPUs of the distill pod, one torchrun process each")
    p.add_argument("--credentials-secret", help="Kubernetes secret with the S3 and MLflow credentials")


def add_arguments(p: argparse.ArgumentParser, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The subcommands, each with the CLI's common ``-c``/``-p`` options (``add_common``)."""
    sub = p.add_subparsers(dest="pipeline_command", required=True)
    c = sub.add_parser("compile", help="write the pipeline YAML (default: pipelines/distill_pipeline.yaml)")
    c.add_argument("-o", "--output", type=Path, help="where to write it")
    c.add_argument("--data-cache-pvc", help="mount this PersistentVolumeClaim for the data cache and checkpoints")
    c.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="run distill as a multi-node job on this many nodes, --accelerator-count GPUs each (needs "
        "--data-cache-pvc)",
    )
    c.add_argument(
        "--training-api",
        choices=TRAINING_APIS,
        default="trainjob",
        help="trainjob: a Kubeflow Trainer v2 TrainJob (default); pytorchjob: a Training Operator 1.9 PyTorchJob",
    )
    c.add_argument(
        "--pytorchjob-nodes",
        type=int,
        default=0,
        help="deprecated (removed in the next release): --nodes N --training-api pytorchjob",
    )
    s = sub.add_parser("submit", help="start one run on a Kubeflow Pipelines cluster")
    _cluster_arguments(s)
    s.add_argument("--run-name", help="display name of the run")
    r = sub.add_parser("schedule", help="create or update the nightly recurring run")
    _cluster_arguments(r)
    r.add_argument("--cron", default="0 2 * * *", help='cron expression (default: "0 2 * * *", 02:00 every night)')
    r.add_argument("--name", default="kdpipe-nightly", help="recurring run name; an existing one is replaced")
    local = sub.add_parser("run-local", help="run the pipeline here with kfp.local")
    local.add_argument(
        "--runner",
        choices=RUNNERS,
        default="subprocess",
        help="subprocess: components run in this Python (default); docker: each in the image, through "
        "the Docker API at DOCKER_HOST (Docker, or `podman system service`)",
    )
    local.add_argument(
        "--pipeline-root",
        type=Path,
        default=DEFAULT_PIPELINE_ROOT,
        help=f"where the run's artifacts go (default: {DEFAULT_PIPELINE_ROOT})",
    )
    local.add_argument("--data-ref", help="pvc:/path, s3://bucket/prefix or dvc+<repo>@<rev>#<path>")
    image = sub.add_parser("image", help="print the container image every component runs in")
    for command in (c, s, r, local, image):
        add_common(command)


def pipeline_arguments(args: argparse.Namespace, params_text: str) -> dict[str, Any]:
    """Pipeline parameters from the command line; unset options keep the compiled defaults."""
    values = {
        "params_yaml": params_text,
        "overrides": list(args.overrides),
        "data_ref": args.data_ref,
        "accelerator_type": getattr(args, "accelerator_type", None),
        "accelerator_count": getattr(args, "accelerator_count", None),
        "credentials_secret": getattr(args, "credentials_secret", None),
    }
    return {k: v for k, v in values.items() if v is not None}


def options_from(args: argparse.Namespace) -> Any:
    """The compile options; ``--pytorchjob-nodes N`` is read as ``--nodes N --training-api pytorchjob``, with a
    warning."""
    from kdpipe_pipelines.distill_pipeline import Options

    if args.pytorchjob_nodes:
        log.warning("--pytorchjob-nodes is deprecated: use --nodes %d --training-api pytorchjob", args.pytorchjob_nodes)
        return Options(args.data_cache_pvc, args.pytorchjob_nodes, "pytorchjob")
    return Options(args.data_cache_pvc, args.nodes, args.training_api)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Carry out one ``kdpipe pipeline`` command (the CLI has validated ``-c`` and ``-p`` already)."""
    from kdpipe.kubeflow.image import IMAGE

    if args.pipeline_command == "image":
        print(IMAGE)
        return {"image": IMAGE}
    from kdpipe_pipelines.distill_pipeline import COMPILED, build, compile_pipeline

    params_text = Path(args.params).read_text()
    if args.pipeline_command == "compile":
        out = compile_pipeline(args.output or COMPILED, params_text, options_from(args))
        print(f"wrote {out}")
        return {"package": str(out)}
    if args.pipeline_command == "run-local":
        from kdpipe_pipelines.local import run_local

        run_dir = run_local(build(params_text), args.pipeline_root, pipeline_arguments(args, params_text), args.runner)
        print(f"artifacts of the run: {run_dir}")
        return {"run_dir": str(run_dir)}
    from kdpipe.kubeflow import client

    package = args.package or COMPILED
    if args.pipeline_command == "submit":
        run_id = client.submit(
            args.host, package, pipeline_arguments(args, params_text), args.experiment, args.run_name
        )
        print(f"started run {run_id} in experiment {args.experiment!r}")
        return {"run_id": run_id}
    result = client.schedule(
        args.host, package, args.cron, args.name, args.experiment, pipeline_arguments(args, params_text)
    )
    print(f"{result['action']} recurring run {args.name!r} ({result['recurring_run_id']}), cron {args.cron!r}")
    return result
