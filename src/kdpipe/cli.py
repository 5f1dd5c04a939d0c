"""`kdpipe ...`: the command line over :mod:`kdpipe.steps`; no logic of its own.

Commands that live outside the library (``kdpipe pipeline ...``, in ``pipelines/``) join through
the ``kdpipe_commands`` entry point group: a module with ``HELP``, ``add_arguments(parser,
add_common)`` and ``run(args)``. ``kdpipe study --kubeflow ...`` joins the same way, through
``kdpipe_study_commands`` (``add_arguments(parser)``, ``run(params, args, command)``). The library never
imports them by name.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from kdpipe import __version__, steps
from kdpipe.config import DEFAULT_PARAMS, Params, load_params
from kdpipe.deploy.onnx import EXPORTER_LOGGERS
from kdpipe.evaluation import report
from kdpipe.evaluation.validation_metrics import ValidationMetrics
from kdpipe.infra.errors import KdpipeError, Terminated
from kdpipe.infra.termination import EXIT_STATUS, stop_on_sigterm
from kdpipe.promotion.records import PromotionRecord
from kdpipe.steps.pipeline_run import with_pipeline_run_id
from kdpipe.steps.spec import (
    DISTILL,
    EVALUATE_TEACHER,
    EXPORT,
    PREPARE_DATA,
    PROMOTE,
    ROLLBACK,
    RUN_PIPELINE,
    STEPS,
    TEACHER_CACHE,
    VALIDATE_STUDENT,
)
from kdpipe.tracking import ui_links
from kdpipe.tracking.server import check_tracking
from kdpipe.training import distributed

log = logging.getLogger("kdpipe")

COMMANDS_GROUP = "kdpipe_commands"
STUDY_COMMANDS_GROUP = "kdpipe_study_commands"
ARTIFACTS_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--params", default=str(DEFAULT_PARAMS), help="params file (default: params.yaml)")
    p.add_argument(
        "-p",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param, e.g. -p train.epochs=2 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdpipe", description="Nightly knowledge distillation pipeline.")
    parser.add_argument("--version", action="version", version=f"kdpipe {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for step in STEPS.values():  # every step is a command, in the order `kdpipe --help` lists them
        p = sub.add_parser(step.verb, help=step.help)
        _add_common(p)
        if step in (DISTILL, RUN_PIPELINE):
            p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        if step in (PROMOTE, ROLLBACK):
            p.add_argument("--dry-run", action="store_true", help="explain the decision without changing anything")
        if step is TEACHER_CACHE:
            p.add_argument("--world-size", type=int, default=1, help="fill the shards of an N-rank distill (default 1)")
    p = sub.add_parser("registry", help="the model registry's MLflow server: webhooks, repairing the ONNX siblings")
    registry_sub = p.add_subparsers(dest="registry_command", required=True)
    p = registry_sub.add_parser(
        "attach-probe", help="put a kdpipe-probe result on the registered version its file belongs to"
    )
    _add_common(p)
    p.add_argument("result", type=Path, help="the JSON result kdpipe-probe (or kdpipe probe) wrote")
    p.add_argument("--version", help="the student version, when the probed file does not name it")
    p = registry_sub.add_parser(
        "repair", help="make the ONNX siblings' champion/challenger follow the student's (after an interrupted move)"
    )
    _add_common(p)
    p.add_argument("--dry-run", action="store_true", help="list what disagrees without changing anything")
    webhook_sub = registry_sub.add_parser("webhook", help="calls from MLflow to a URL").add_subparsers(
        dest="webhook_command", required=True
    )
    p = webhook_sub.add_parser(
        "add", help="POST to URL, HMAC-signed, whenever a version gets an alias (a new champion)"
    )
    _add_common(p)
    p.add_argument("url", help="the receiver, e.g. https://deploy.example/hooks/mlflow")
    p.add_argument(
        "--secret-env",
        required=True,
        metavar="VAR",
        help="environment variable holding the signing secret (never put the secret on the command line)",
    )
    p = sub.add_parser(
        "probe", help="an exported student's latency, memory, size and top-1 on this machine (as kdpipe-probe)"
    )
    _add_common(p)
    p.add_argument("target", help="an .onnx file, OpenVINO .xml, or models:/<name>-onnx@<alias>")
    p.add_argument("--images", type=Path, help="a folder of class folders (by class name or index): adds top-1")
    p.add_argument("--device", help="the name this machine goes by in the result (default: its hostname)")
    p.add_argument("--probes", type=int, default=3, help="fresh probe processes; latency is their median")
    p.add_argument("--out", type=Path, help="write the JSON result here (default: print it)")
    from kdpipe.study import add_arguments as add_study_arguments

    p = sub.add_parser("study", help="the accuracy study: baselines, the recipe, its ablations, the capacity gap")
    _add_common(p)
    add_study_arguments(p)
    for entry in entry_points(group=STUDY_COMMANDS_GROUP):  # `kdpipe study --kubeflow ...`
        backend = entry.load()
        backend.add_arguments(p)
        p.set_defaults(study_backend=backend)
    for entry in entry_points(group=COMMANDS_GROUP):
        plugin = entry.load()
        p = sub.add_parser(entry.name, help=plugin.HELP)
        plugin.add_arguments(p, _add_common)
        p.set_defaults(plugin=plugin)
    return parser


def _columns(rows: list[Any]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _summary_table(v: ValidationMetrics, promotion: PromotionRecord, teacher_arch: str, student_arch: str) -> list[str]:
    """The lines `kdpipe run` closes with: each model on the test and gate splits and the operational sets, the
    inference cost, the sets' shift, and what promote did (the champion's architecture comes with its figures)."""
    split, sets = v.gate.split, v.operational
    rows = [
        (
            "",
            "test top-1",
            f"{split} top-1",
            f"{split} corrupted top-1",
            "rel. mCE",
            "retention",
            *(f"{name} top-1" for name in sets),
            "parameters",
            "latency (ms, batch 1)",
        )
    ]

    def fmt(m: dict[str, Any], key: str, spec: str) -> str:
        return "-" if m.get(key) is None else format(m[key], spec)

    for who in ("teacher", "student", "champion"):
        m = v.of(who)
        if not m:
            continue
        name = m.get("arch", teacher_arch if who == "teacher" else student_arch)
        g = v.gate.of(who) or {}
        rows.append(
            (
                f"{who} ({name})",
                fmt(m, "top1", ".2%"),
                fmt(g, "top1", ".2%"),
                fmt(g, "corrupted_top1", ".2%"),
                fmt(g, "relative_mce", ".3f"),
                fmt(g, "robustness_retention", ".3f"),
                *(fmt(f.of(who) or {}, "top1", ".2%") for f in sets.values()),
                fmt(m, "parameters", ","),
                fmt(m, "latency_ms_batch1", ".2f"),
            )
        )
    lines = _columns(rows)
    lines.append(f"corruptions: {v.corruptions}")
    deployed = v.deployment
    if deployed:
        lines += [
            f"inference cost at {deployed['threads']} thread(s), each in a fresh process; the gate reads "
            f"{deployed['deploy_format']}:",
            *_columns(report.cost_rows(deployed)),
            *[line for line in [report.spread_line(deployed), report.device_line(deployed)] if line],
        ]
        if not deployed["int8"]["offered"]:
            lines.append(f"int8 is not offered for deployment: {deployed['int8']['reason']}")
        if deployed.get("openvino_int8") and not deployed["openvino_int8"]["offered"]:
            lines.append(f"OpenVINO int8 is not offered for deployment: {deployed['openvino_int8']['reason']}")
    lines += [
        f"operational set {name}: {f.num_samples:,} images from {f.source}; teacher-student disagreement "
        f"{f.shift['disagreement']:.2%}, input mean shift {f.shift['input_mean_shift']:+.3f}"
        for name, f in sets.items()
    ]
    ratio = v.teacher["parameters"] / max(1, v.student["parameters"])
    lines.append(f"student/teacher parameters: 1/{ratio:.1f}; {promotion.message}")
    return lines


def _tracking_lines(params: Params) -> list[str]:
    """Where the runs and the registered model are, when tracking is on."""
    if not params.tracking.enabled:
        return []
    lines = []
    if params.tracking.uri.startswith("sqlite:"):
        lines.append(f"start the MLflow UI with: .venv/bin/mlflow ui --backend-store-uri {params.tracking.uri}")
    lines.append(f"runs: {ui_links.experiment(params, str(check_tracking(params)))}")
    lines.append(f"registered model: {ui_links.registered_model(params, params.tracking.registered_model)}")
    return lines


def _distill(params: Params, resume: bool) -> dict[str, Any]:
    """One process of the distill step; under torchrun, one rank of a DDP run."""
    with distributed.process_group(params.runtime.device) as world:
        return steps.distill(params, resume=resume, rank=world.rank, world_size=world.world_size)


def _study(params: Params, args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """The study records its own command line, so its report says how to reproduce it."""
    from kdpipe.study import run_from_args

    command = shlex.join(["kdpipe", *(sys.argv[1:] if argv is None else argv)])
    if getattr(args, "kubeflow", None):
        return dict(args.study_backend.run(params, args, command))
    summary = run_from_args(params, args, command)
    print(Path(summary["files"]["report"]).read_text(), end="")
    return summary


def _secret(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise KdpipeError(
            f"--secret-env: {variable} is not set in the environment (it holds the webhook's signing secret)"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # kdpipe prints its own progress; MLflow's download bars would break its log lines (an explicit
    # MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR in the environment still wins).
    os.environ.setdefault(ARTIFACTS_PROGRESS_BAR_ENV, "false")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    for chatty in EXPORTER_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        params = with_pipeline_run_id(load_params(args.params, args.overrides), resume=getattr(args, "resume", False))
        actions: dict[str, Callable[[], Any]] = {
            PREPARE_DATA.verb: lambda: steps.prepare_data(params),
            EVALUATE_TEACHER.verb: lambda: steps.evaluate_teacher(params),
            DISTILL.verb: lambda: _distill(params, args.resume),
            TEACHER_CACHE.verb: lambda: steps.fill_teacher_cache(params, args.world_size),
            VALIDATE_STUDENT.verb: lambda: steps.validate_student(params),
            EXPORT.verb: lambda: steps.export_models(params),
            PROMOTE.verb: lambda: steps.promote(params, dry_run=args.dry_run),
            ROLLBACK.verb: lambda: steps.rollback(params, dry_run=args.dry_run),
            RUN_PIPELINE.verb: lambda: steps.run_pipeline(params, resume=args.resume),
            "study": lambda: _study(params, args, argv),
            "registry": lambda: {
                "repair": lambda: steps.repair_registry(params, dry_run=args.dry_run),
                "attach-probe": lambda: steps.attach_probe(params, args.result, args.version),
                "webhook": lambda: steps.add_webhook(params, args.url, _secret(args.secret_env)),
            }[args.registry_command](),
            "probe": lambda: steps.probe(params, args.target, args.images, args.device, args.probes, args.out),
        }
        with stop_on_sigterm(params.runtime.termination_grace_s):
            result = args.plugin.run(args) if hasattr(args, "plugin") else actions[args.command]()
        if args.command == RUN_PIPELINE.verb:
            table = _summary_table(result["validation"], result["promotion"], params.teacher.arch, params.student.arch)
            print("\n".join([*table, *_tracking_lines(params)]))
        elif args.command == TEACHER_CACHE.verb:
            print(
                f"teacher cache {result['directory']}: recorded {result['recorded']} epoch file(s), "
                f"{result['bytes'] / 1e6:,.1f} MB, for {result['epochs']} epoch(s) x {result['world_size']} rank(s)"
            )
        elif args.command == EXPORT.verb:
            print("\n".join([*_columns(report.cost_rows(result)), report.spread_line(result)]).rstrip())
        elif args.command in (PROMOTE.verb, ROLLBACK.verb, "registry"):
            print(result.message)
        elif args.command == "probe" and not args.out:
            print(json.dumps(result, indent=2))
    except KdpipeError as exc:
        print(f"kdpipe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = f"terminated ({exc})" if isinstance(exc, Terminated) else "interrupted"
        print(f"kdpipe: {what}; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return EXIT_STATUS if isinstance(exc, Terminated) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
