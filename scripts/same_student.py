"""Prove that a change to kdpipe's code leaves its output bit for bit the same: the same student before and after.

A behaviour-preserving refactor (issue 27) must not change a single bit of what ``kdpipe run`` produces. This
script runs the pipeline of one checkout on a reduced budget and compares two such runs:

    git clone -q . /tmp/base && git -C /tmp/base checkout -q <parent commit>
    .venv/bin/python scripts/same_student.py run --repo /tmp/base --out /tmp/same/base
    .venv/bin/python scripts/same_student.py run --repo . --out /tmp/same/head
    .venv/bin/python scripts/same_student.py compare /tmp/same/base /tmp/same/head

``run`` copies the checkout's src/kdpipe and params.yaml (uncommitted edits included) to a staging directory that is
the same for every run (/tmp/kdpipe-same-student, held under a lock), so that nobody's edits reach a run midway and
the file paths that exports record are the same for two runs of one commit; ``--in-place`` imports DIR/src itself.
It starts ``python -m kdpipe run`` with this interpreter (the project's virtualenv) and ``PYTHONPATH`` at that copy,
which wins over the editable install, and asserts that ``kdpipe.__file__`` lies in it before the pipeline starts.
Every ``paths.*``, the raw data copy and the MLflow store (a sqlite file and its artifacts) lie under OUT; the child
runs with cwd OUT, on the CPU with one thread (``runtime.num_threads=1``, ``OMP_NUM_THREADS=1``) and a fixed pipeline
run id (model files hold it in their metadata). The budget: 4,000 training images of which 1,000 are held out for
validation, 1,000 test images, a 2,500-image transfer set, 2 teacher and 2 student epochs, the validation thresholds
relaxed so that the student is always registered and promoted; ``-p KEY=VALUE`` adds overrides. OUT/same_student.json
records the command, the checkout (commit, uncommitted files, digests of its sources and of the copy that ran), the
wall time and the exit status; OUT/kdpipe.log holds the pipeline's output. About two minutes on two busy cores.

``compare A B`` exits 0 only when the two runs are identical:

* every tensor in every ``.pt`` file (prepared splits, teacher and student models, checkpoints, teacher-output cache,
  predictions) is ``torch.equal`` with the same dtype, shape and strides, walking nested dicts and lists;
* ``.onnx`` and ``.pt2`` (torch.export) files are equal byte for byte, else weight for weight and graph for graph;
* every JSON, YAML, CSV, Markdown and text file is equal value for value, and every other file byte for byte;
* MLflow: each step's run (status, params, tags, the full history of every metric, its artifacts), each logged
  model (params, tags, metrics, artifacts) and the model registry: each registered model's tags, aliases and
  description, and each version's tags, aliases, description, source and run.

Left out or masked, and listed in the summary: run ids, logged-model ids and the pipeline run id are replaced by the
step they belong to (a reference to the distill run must still point at the distill run); OUT, the sources and params
file that ran and the git commit by placeholders; ISO timestamps and durations in text by placeholders; keys holding
timestamps, durations, measured speed or memory (latency, p50/p95, throughput, images/s, memory_mb), process ids,
host names, work directories and the git commit are not compared, nor the measured (and file size) cells of Markdown
tables, whose exact values the JSON files hold. Exported files whose weights and graphs are equal but whose debug
metadata differs (ONNX node metadata and torch.export stack traces name the module and source line of the code that
built each node: a moved module changes them) are reported apart, with the hashes and sizes of those files that
differ with them; they do not count as differences. Inputs (OUT/raw, the copied Fashion-MNIST archives) and the
script's own files are not compared.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_FILE = "same_student.json"
LOG_FILE = "kdpipe.log"
PIPELINE_RUN_ID = "5a3e5a3e5a3e"
STAGE = Path("/tmp/kdpipe-same-student")  # where run copies the checkout's sources; the same for every run
NOT_COMPARED = {"raw", "mlruns", "mlruns.db", RECORD_FILE, LOG_FILE}  # inputs, the MLflow store (read through its API)


def budget_overrides(out: Path, pipeline_run_id: str) -> list[str]:
    """The reduced budget and the isolation of one run: every output under ``out``."""
    return [
        f"data.root={out / 'raw'}",
        "data.train_subset=4000",
        "data.val_size=1000",
        "data.test_subset=1000",
        "teacher.train.epochs=2",
        "train.epochs=2",
        "train.subset=2500",
        "runtime.device=cpu",
        "runtime.num_threads=1",
        "runtime.progress=log",
        "export.repeats=20",
        "export.warmup=2",
        "validate.min_top1=0.0",
        "validate.max_teacher_gap=1.0",
        "validate.max_latency_ms=1000000",
        f"tracking.uri=sqlite:///{out / 'mlruns.db'}",
        f"tracking.pipeline_run_id={pipeline_run_id}",
        "tracking.system_metrics_seconds=null",
        "tracking.retry_seconds=5",
        f"paths.prepared={out / 'data' / 'prepared'}",
        f"paths.teacher={out / 'artifacts' / 'teacher'}",
        f"paths.student={out / 'artifacts' / 'student'}",
        f"paths.checkpoints={out / 'artifacts' / 'checkpoints'}",
        f"paths.validation={out / 'artifacts' / 'validation'}",
        f"paths.promotion={out / 'artifacts' / 'promotion'}",
        f"paths.teacher_cache={out / 'artifacts' / 'teacher_cache'}",
    ]


# Imports kdpipe, refuses to go on unless it came from the checkout's src, then runs it as `python -m kdpipe` would.
LAUNCHER = """
import runpy, sys
from pathlib import Path
import kdpipe
src, where = Path(sys.argv[1]).resolve(), Path(kdpipe.__file__).resolve()
print(f"same_student: kdpipe imported from {where}", flush=True)
if src not in where.parents:
    sys.exit(f"same_student: kdpipe was imported from {where}, not from {src}")
sys.argv = ["kdpipe", *sys.argv[2:]]
runpy.run_module("kdpipe", run_name="__main__", alter_sys=True)
"""


def source_digest(src: Path, params: Path) -> str:
    """sha256 over a package's files and params.yaml: says whether two copies, or one copy over time, are the same."""
    digest = hashlib.sha256()
    files = [p for p in sorted(src.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    for name, path in [*((str(f.relative_to(src)), f) for f in files), ("params.yaml", params)]:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_state(repo: Path) -> dict[str, Any]:
    """The checkout's commit and uncommitted files, read without taking git's locks."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.rstrip() if done.returncode == 0 else f"unavailable: {done.stderr.strip()}"

    return {"commit": git("rev-parse", "HEAD"), "uncommitted": git("status", "--porcelain").splitlines()}


def snapshot(repo: Path, stage: Path) -> tuple[Path, Path]:
    """Copy the checkout's src/kdpipe and params.yaml to ``stage``: the run reads a copy nobody edits meanwhile.

    ``stage`` is the same for every run, so file paths that exports record (the stack traces in ONNX and torch.export
    files) are the same for two runs of one commit, and their bytes compare."""
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(repo / "src" / "kdpipe", stage / "src" / "kdpipe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(repo / "params.yaml", stage / "params.yaml")
    return stage / "src", stage / "params.yaml"


def child_env(src: Path, git_commit: str) -> dict[str, str]:
    """This environment without kdpipe's and MLflow's settings, importing ``src`` on one CPU thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KDPIPE_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(src),
        PYTHONHASHSEED="0",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        MPLBACKEND="Agg",
        KDPIPE_GIT_COMMIT=git_commit,  # what the run tags as kdpipe.git_commit; a snapshot is no git checkout
    )
    return env


def cmd_run(args: argparse.Namespace) -> int:
    repo, out, stage = args.repo.resolve(), args.out.resolve(), args.stage.resolve()
    if not (repo / "src" / "kdpipe" / "__init__.py").is_file():
        sys.exit(f"{repo}: no src/kdpipe package here")
    if out.exists() and any(out.iterdir()):
        if not (args.force and (out / RECORD_FILE).is_file()):
            sys.exit(f"{out}: not empty (--force replaces an earlier output of this script)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    git = git_state(repo)
    dirty = any(line[3:].startswith(("src/", "params.yaml")) for line in git["uncommitted"])
    stage.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{stage}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(f"{stage}: another same_student run is using this staging directory (--stage picks another)")
        if args.in_place:
            src, params = repo / "src", repo / "params.yaml"
        else:
            src, params = snapshot(repo, stage)
        overrides = budget_overrides(out, args.pipeline_run_id) + list(args.set)
        command = [sys.executable, "-c", LAUNCHER, str(src), "run", "-c", str(params)]
        for item in overrides:
            command += ["-p", item]
        record: dict[str, Any] = {
            "repo": str(repo),
            "out": str(out),
            "ran_from": str(src),
            "params_file": str(params),
            "python": sys.executable,
            "command": [*command[:2], "<LAUNCHER>", *command[3:]],
            "git": git,
            "git_commit_tag": git["commit"] + ("-dirty" if dirty else ""),
            "source_digest": source_digest(src / "kdpipe", params),
            "repo_digest_before": source_digest(repo / "src" / "kdpipe", repo / "params.yaml"),
        }
        print(f"same_student: kdpipe run of {repo} ({record['git_commit_tag'][:18]}) into {out}", flush=True)
        start = time.monotonic()
        with (out / LOG_FILE).open("w") as log:
            env = child_env(src, record["git_commit_tag"])
            done = subprocess.run(command, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        record |= {
            "wall_seconds": round(time.monotonic() - start, 1),
            "returncode": done.returncode,
            "source_digest_after": source_digest(src / "kdpipe", params),
            "repo_digest_after": source_digest(repo / "src" / "kdpipe", repo / "params.yaml"),
        }
    lines = (out / LOG_FILE).read_text(errors="replace").splitlines()
    record["imported_from"] = next((ln.split(" from ", 1)[1] for ln in lines if ln.startswith("same_student:")), None)
    (out / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    notes = []
    if record["source_digest"] != record["source_digest_after"]:
        notes.append("WARNING: the sources it ran changed during the run")
    if record["repo_digest_before"] != record["repo_digest_after"]:
        notes.append("the checkout changed during the run" + ("" if args.in_place else " (the run read its snapshot)"))
    if record["source_digest"] != record["repo_digest_before"]:
        notes.append("WARNING: the snapshot differs from the checkout")
    if done.returncode != 0:
        print("\n".join(lines[-40:]), file=sys.stderr, flush=True)
    print(
        f"same_student: exit {done.returncode} after {record['wall_seconds']} s; kdpipe from {record['imported_from']}"
        + "".join(f"; {n}" for n in notes),
        flush=True,
    )
    return done.returncode


# ---------------------------------------------------------------------------------------------------------- compare

VOLATILE_KEY = re.compile(
    r"(?:^|[._/])(?:\w*run_id|\w*model_id|pid|host|hostname|started|\w*_at|\w*timestamp|\w*_time|utc_time_created"
    r"|model_uuid|workdir|git_commit|champion_since|\w*seconds|duration\w*|\w*latency\w*|\w*p50_ms|\w*p95_ms"
    r"|\w*throughput\w*|\w*images_per_s|\w*memory_mb|mlflow_version)$"
)
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
DURATION = re.compile(r"\b\d+(?:\.\d+)? ?s\b")
# Markdown table columns and rows holding measured speed or memory, or file sizes (the JSON files hold those exactly).
VOLATILE_COLUMN = re.compile(r"\bp50\b|\bp95\b|images/s|memory|latency|seconds|\bms\b|size", re.IGNORECASE)
# Node metadata of an ONNX export that records where the code lives (module paths, source files and lines), not what
# the graph computes: a module moved by a refactor changes it.
ONNX_DEBUG_METADATA = frozenset({"namespace", "pkg.torch.onnx.class_hierarchy", "pkg.torch.onnx.stack_trace"})
# Values derived from the bytes of exported files: their sha256 and sizes.
EXPORT_DERIVED = re.compile(r"/sha256/[^/]+\.(?:onnx|pt2)$|onnx[^/]*/size_kb$|onnx\w*_size_kb$|/model_size_bytes$")


# Settings whose names look volatile but which are configuration: compared.
CONFIG_KEY = re.compile(r"(?:^|[._/])(?:max_\w+|retry_seconds|system_metrics_seconds|kubeflow_run_id)$")


def volatile(key: str) -> bool:
    """A key whose value is measured or names this run (time, speed, memory, ids, host, directory, commit)."""
    return bool(VOLATILE_KEY.search(key)) and not CONFIG_KEY.search(key)


class Masker:
    """One run's volatile strings (ids, its directories) replaced by names that two runs share."""

    def __init__(self, root: Path, record: dict[str, Any]) -> None:
        self.root = root
        self.literals: dict[str, str] = {str(root): "<OUT>"}
        for key, name in (("ran_from", "<SRC>"), ("params_file", "<PARAMS>"), ("git_commit_tag", "<commit>")):
            if record.get(key):
                self.literals[str(record[key])] = name
        if record.get("git", {}).get("commit"):
            self.literals[record["git"]["commit"]] = "<commit>"

    def add(self, literal: str, name: str) -> None:
        if literal:
            self.literals[literal] = name

    def text(self, s: str) -> str:
        for literal in sorted(self.literals, key=len, reverse=True):
            s = s.replace(literal, self.literals[literal])
        return DURATION.sub("<duration>", ISO_TIME.sub("<time>", s))


@dataclass
class Report:
    tensors: int = 0
    arrays: int = 0
    values: int = 0
    files: int = 0
    identical_bytes: int = 0
    runs: int = 0
    params: int = 0
    metric_values: int = 0
    logged_models: int = 0
    registered_models: int = 0
    versions: int = 0
    registry_tags: int = 0
    aliases: int = 0
    excluded: set[str] = field(default_factory=set)
    differences: list[tuple[str, str]] = field(default_factory=list)
    explained: list[tuple[str, str]] = field(default_factory=list)
    debug_only: list[str] = field(default_factory=list)  # exported files equal but for their debug metadata
    info: list[str] = field(default_factory=list)

    def differ(self, where: str, what: str) -> None:
        self.differences.append((where, what))

    def settle(self) -> None:
        """When exported files differ only in debug metadata, their hashes and sizes differ with them: explained."""
        if self.debug_only:
            derived = [d for d in self.differences if EXPORT_DERIVED.search(d[0]) and " only in " not in d[1]]
            self.explained = derived
            self.differences = [d for d in self.differences if d not in derived]


@dataclass
class Side:
    root: Path
    mask: Masker


def describe_tensor_diff(a: Any, b: Any) -> str:
    import torch

    if a.is_floating_point() or a.is_complex():
        diff = (a.double() - b.double()).abs()
        return f"{int((a != b).sum())} of {a.numel()} elements differ, max |diff| {float(diff.nan_to_num(0).max()):.3g}"
    return f"{int((a != b).sum())} of {a.numel()} elements differ" if a.numel() else str(torch.equal(a, b))


def compare_obj(a: Any, b: Any, where: str, sa: Side, sb: Side, rep: Report) -> None:
    """Walk two loaded structures in step: tensors by ``torch.equal``, floats exactly, strings masked."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            rep.differ(where, f"{type(a).__name__} vs {type(b).__name__}")
            return
        rep.tensors += 1
        a, b = a.detach().cpu(), b.detach().cpu()
        if a.dtype != b.dtype or a.shape != b.shape:
            rep.differ(where, f"tensor {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}")
        elif a.stride() != b.stride():
            rep.differ(where, f"tensor strides {a.stride()} vs {b.stride()} (memory format)")
        elif not torch.equal(a, b):
            rep.differ(where, f"tensor values: {describe_tensor_diff(a, b)}")
        return
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        rep.arrays += 1
        same = isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        if not (same and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()):
            rep.differ(where, "numpy array differs")
        return
    if type(a) is not type(b):
        rep.differ(where, f"{type(a).__name__} {a!r:.80} vs {type(b).__name__} {b!r:.80}")
        return
    if isinstance(a, dict):
        ka = {sa.mask.text(str(k)): k for k in a}
        kb = {sb.mask.text(str(k)): k for k in b}
        for key in sorted(set(ka) | set(kb)):
            if volatile(key):
                rep.excluded.add(key.rsplit(".", 1)[-1])
            elif key not in ka or key not in kb:
                rep.differ(where, f"key {key!r} only in {'B' if key not in ka else 'A'}")
            else:
                compare_obj(a[ka[key]], b[kb[key]], f"{where}/{key}", sa, sb, rep)
        return
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            rep.differ(where, f"{len(a)} vs {len(b)} items")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            compare_obj(x, y, f"{where}[{i}]", sa, sb, rep)
        return
    rep.values += 1
    if isinstance(a, str):
        if sa.mask.text(a) != sb.mask.text(b):
            rep.differ(where, f"{sa.mask.text(a)!r:.200} vs {sb.mask.text(b)!r:.200}")
    elif isinstance(a, float):
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            rep.differ(where, f"{a!r} vs {b!r}")
    elif isinstance(a, bool | int | bytes | type(None)):
        if a != b:
            rep.differ(where, f"{a!r} vs {b!r}")
    elif sa.mask.text(repr(a)) != sb.mask.text(repr(b)):
        rep.differ(where, f"{type(a).__name__}: {a!r:.120} vs {b!r:.120}")


def mask_markdown(text: str) -> str:
    """Cells of Markdown tables that hold measured speed or memory, by column header or row label, as <measured>."""
    out, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            out.append(line)
            header = None
            continue
        cells = line.strip().strip("|").split("|")
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            label = cells[0].strip().strip("`")
            row_volatile = bool(VOLATILE_COLUMN.search(label)) or volatile(label)
            cells = [
                "<measured>"
                if i and (row_volatile or (i < len(header) and VOLATILE_COLUMN.search(header[i])))
                else cell
                for i, cell in enumerate(cells)
            ]
        out.append("|" + "|".join(cells) + "|")
    return "\n".join(out)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def compare_onnx(pa: Path, pb: Path, where: str, sa: Side, sb: Side, rep: Report) -> None:
    """ONNX files whose bytes differ: their weights tensor for tensor, then the rest of the model."""
    import onnx
    import torch
    from onnx import numpy_helper

    ma, mb = onnx.load(str(pa)), onnx.load(str(pb))
    wa = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in ma.graph.initializer}
    wb = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in mb.graph.initializer}
    before = len(rep.differences)
    compare_obj(wa, wb, f"{where}:initializers", sa, sb, rep)
    for m in (ma, mb):
        del m.graph.initializer[:]
    if sa.mask.text(str(ma)) == sb.mask.text(str(mb)):
        rep.info.append(f"{where}: bytes differ, weights and graph equal")
        return
    for m in (ma, mb):
        for node in m.graph.node:
            kept = [prop for prop in node.metadata_props if prop.key not in ONNX_DEBUG_METADATA]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
    if sa.mask.text(str(ma)) != sb.mask.text(str(mb)):
        rep.differ(where, "the ONNX graph differs (beyond its weights and debug metadata)")
    elif len(rep.differences) == before:
        rep.debug_only.append(where)


def compare_pt2(pa: Path, pb: Path, where: str, sa: Side, sb: Side, rep: Report) -> None:
    """torch.export archives whose bytes differ: their state dicts and constants, then their graphs' code."""
    import torch

    ea, eb = torch.export.load(str(pa)), torch.export.load(str(pb))
    compare_obj(dict(ea.state_dict), dict(eb.state_dict), f"{where}:state_dict", sa, sb, rep)
    compare_obj(dict(ea.constants), dict(eb.constants), f"{where}:constants", sa, sb, rep)
    before = len(rep.differences)
    compare_obj(str(ea.graph_signature), str(eb.graph_signature), f"{where}:graph_signature", sa, sb, rep)
    if ea.graph_module.code != eb.graph_module.code:
        rep.differ(where, "the exported graph's code differs")
    elif len(rep.differences) == before:
        rep.debug_only.append(where)


def compare_file(pa: Path, pb: Path, where: str, sa: Side, sb: Side, rep: Report) -> None:
    import torch
    import yaml

    rep.files += 1
    ba, bb = pa.read_bytes(), pb.read_bytes()
    if ba == bb:
        rep.identical_bytes += 1
    name, suffix = pa.name, pa.suffix.lower()
    if suffix == ".pt":
        a = torch.load(io.BytesIO(ba), map_location="cpu", weights_only=False)
        b = torch.load(io.BytesIO(bb), map_location="cpu", weights_only=False)
        compare_obj(a, b, where, sa, sb, rep)
    elif suffix == ".json" or name.endswith(".kdpipe-lock"):
        compare_obj(json.loads(ba), json.loads(bb), where, sa, sb, rep)
    elif suffix in (".yaml", ".yml") or name == "MLmodel":
        compare_obj(yaml.safe_load(ba), yaml.safe_load(bb), where, sa, sb, rep)
    elif suffix == ".csv":
        compare_obj(read_csv(pa), read_csv(pb), where, sa, sb, rep)
    elif ba == bb:
        return
    elif suffix == ".onnx":
        compare_onnx(pa, pb, where, sa, sb, rep)
    elif suffix == ".pt2" and zipfile.is_zipfile(pa):
        compare_pt2(pa, pb, where, sa, sb, rep)
    elif suffix in (".md", ".txt", ".log"):
        ta, tb = mask_markdown(sa.mask.text(ba.decode())), mask_markdown(sb.mask.text(bb.decode()))
        if ta != tb:
            lines = [f"{x!r} vs {y!r}" for x, y in zip(ta.splitlines(), tb.splitlines(), strict=False) if x != y]
            rep.differ(where, "; ".join(lines[:3]) or "line counts differ")
    else:
        rep.differ(where, f"bytes differ ({len(ba)} vs {len(bb)} bytes)")


def tree(root: Path, skip: Collection[str]) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


def compare_trees(ra: Path, rb: Path, label: str, sa: Side, sb: Side, rep: Report, skip: Collection[str] = ()) -> None:
    fa, fb = tree(ra, skip) if ra.is_dir() else {}, tree(rb, skip) if rb.is_dir() else {}
    for rel in sorted(set(fa) | set(fb)):
        where = f"{label}{rel}"
        if rel not in fa or rel not in fb:
            rep.differ(where, f"file only in {'B' if rel not in fa else 'A'}")
            continue
        try:
            compare_file(fa[rel], fb[rel], where, sa, sb, rep)
        except Exception as exc:  # an unreadable file is a finding, not the end of the comparison
            rep.differ(where, f"could not compare: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------------- MLflow side


@dataclass
class Store:
    """One run's MLflow store: its runs and logged models keyed by names that two runs share."""

    client: Any
    runs: dict[str, Any]
    models: dict[str, Any]
    experiments: dict[str, Any]


def local_path(uri: str) -> Path:
    """The directory of a local artifact URI (a plain path or file:...)."""
    return Path(uri.removeprefix("file://").removeprefix("file:"))


def unique(key: str, taken: dict[str, Any]) -> str:
    """``key``, or ``key#2``, ``key#3``... when it is taken (a step that ran more than once)."""
    return next(k for k in (key, *(f"{key}#{i}" for i in range(2, len(taken) + 2))) if k not in taken)


def open_store(side: Side) -> Store:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{side.root / 'mlruns.db'}")
    experiments = {e.name: e for e in client.search_experiments()}
    runs: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for exp in experiments.values():
        found = client.search_runs([exp.experiment_id], max_results=10000, order_by=["attributes.start_time ASC"])
        for run in found:
            step = run.data.tags.get("kdpipe.step") or run.info.run_name
            key = unique(f"{exp.name}/{step}", runs)
            runs[key] = run
            side.mask.add(run.info.run_id, f"<run:{key}>")
            if run.data.tags.get("kdpipe.pipeline_run_id"):
                side.mask.add(run.data.tags["kdpipe.pipeline_run_id"], "<pipeline>")
        step_of = {r.info.run_id: k for k, r in runs.items()}
        for model in sorted(client.search_logged_models([exp.experiment_id]), key=lambda m: m.creation_timestamp):
            key = unique(f"{model.name}@{step_of.get(model.source_run_id, '?')}", models)
            models[key] = model
            side.mask.add(model.model_id, f"<model:{key}>")
    return Store(client, runs, models, experiments)


def compare_keys(a: dict[str, Any], b: dict[str, Any], where: str, rep: Report) -> list[str]:
    for key in sorted(set(a) ^ set(b)):
        rep.differ(where, f"{key!r} only in {'A' if key in a else 'B'}")
    return sorted(set(a) & set(b))


def compare_tags(a: dict[str, str], b: dict[str, str], where: str, sa: Side, sb: Side, rep: Report) -> int:
    """Tags without volatile keys, values masked; returns how many were compared."""
    rep.excluded.update(k for k in {*a, *b} if volatile(k))
    a = {k: v for k, v in a.items() if not volatile(k)}
    b = {k: v for k, v in b.items() if not volatile(k)}
    keys = compare_keys(a, b, where, rep)
    for key in keys:
        if sa.mask.text(a[key]) != sb.mask.text(b[key]):
            rep.differ(f"{where}/{key}", f"{sa.mask.text(a[key])!r:.200} vs {sb.mask.text(b[key])!r:.200}")
    return len(keys)


def logged_metrics(model: Any, rep: Report) -> dict[str, list[tuple[int, float]]]:
    """A logged model's metrics by name: their (step, value) pairs, volatile names left out."""
    metrics: dict[str, list[tuple[int, float]]] = {}
    for m in model.metrics or []:
        if volatile(m.key):
            rep.excluded.add(m.key)
        else:
            metrics.setdefault(m.key, []).append((m.step, m.value))
    return {k: sorted(v) for k, v in metrics.items()}


def compare_runs(ta: Store, tb: Store, sa: Side, sb: Side, rep: Report) -> None:
    for name in compare_keys(ta.experiments, tb.experiments, "mlflow experiments", rep):
        ea, eb = ta.experiments[name], tb.experiments[name]
        compare_tags(ea.tags, eb.tags, f"mlflow experiment {name} tags", sa, sb, rep)
        if sa.mask.text(ea.artifact_location) != sb.mask.text(eb.artifact_location):
            rep.differ(f"mlflow experiment {name}", "artifact location")
    for key in compare_keys(ta.runs, tb.runs, "mlflow runs", rep):
        ra, rb = ta.runs[key], tb.runs[key]
        where = f"mlflow run {key}"
        rep.runs += 1
        for attr in ("status", "run_name", "lifecycle_stage"):
            va, vb = sa.mask.text(str(getattr(ra.info, attr))), sb.mask.text(str(getattr(rb.info, attr)))
            if va != vb:
                rep.differ(f"{where} {attr}", f"{va!r} vs {vb!r}")
        compare_tags(ra.data.tags, rb.data.tags, f"{where} tags", sa, sb, rep)
        params = compare_keys(ra.data.params, rb.data.params, f"{where} params", rep)
        rep.params += len(params)
        for p in params:
            if sa.mask.text(ra.data.params[p]) != sb.mask.text(rb.data.params[p]):
                rep.differ(f"{where} param {p}", f"{ra.data.params[p]!r} vs {rb.data.params[p]!r}")
        for metric in compare_keys(ra.data.metrics, rb.data.metrics, f"{where} metrics", rep):
            if volatile(metric):
                rep.excluded.add(metric)
                continue
            ha = [(m.step, m.value) for m in ta.client.get_metric_history(ra.info.run_id, metric)]
            hb = [(m.step, m.value) for m in tb.client.get_metric_history(rb.info.run_id, metric)]
            rep.metric_values += len(ha)
            if ha != hb:
                rep.differ(f"{where} metric {metric}", f"{ha} vs {hb}")
        compare_trees(
            local_path(ra.info.artifact_uri), local_path(rb.info.artifact_uri), f"{where} artifacts/", sa, sb, rep
        )
    for key in compare_keys(ta.models, tb.models, "mlflow logged models", rep):
        ma, mb = ta.models[key], tb.models[key]
        where = f"mlflow logged model {key}"
        rep.logged_models += 1
        compare_tags(ma.tags, mb.tags, f"{where} tags", sa, sb, rep)
        compare_obj(ma.params, mb.params, f"{where} params", sa, sb, rep)
        metrics_a, metrics_b = logged_metrics(ma, rep), logged_metrics(mb, rep)
        for metric in compare_keys(metrics_a, metrics_b, f"{where} metrics", rep):
            rep.metric_values += len(metrics_a[metric])
            if metrics_a[metric] != metrics_b[metric]:
                rep.differ(f"{where} metric {metric}", f"{metrics_a[metric]} vs {metrics_b[metric]}")
        compare_trees(
            local_path(ma.artifact_location), local_path(mb.artifact_location), f"{where} artifacts/", sa, sb, rep
        )


def compare_registry(ta: Store, tb: Store, sa: Side, sb: Side, rep: Report) -> None:
    models_a = {m.name: m for m in ta.client.search_registered_models()}
    models_b = {m.name: m for m in tb.client.search_registered_models()}
    for name in compare_keys(models_a, models_b, "registry models", rep):
        ma, mb = models_a[name], models_b[name]
        where = f"registry {name}"
        rep.registered_models += 1
        rep.registry_tags += compare_tags(ma.tags, mb.tags, f"{where} tags", sa, sb, rep)
        rep.aliases += len(ma.aliases)
        if dict(ma.aliases) != dict(mb.aliases):
            rep.differ(f"{where} aliases", f"{dict(ma.aliases)} vs {dict(mb.aliases)}")
        if sa.mask.text(ma.description or "") != sb.mask.text(mb.description or ""):
            rep.differ(f"{where} description", "differs")
        va = {v.version: v for v in ta.client.search_model_versions(f"name='{name}'")}
        vb = {v.version: v for v in tb.client.search_model_versions(f"name='{name}'")}
        for version in compare_keys(va, vb, f"{where} versions", rep):
            a, b = va[version], vb[version]
            at = f"{where} v{version}"
            rep.versions += 1
            rep.registry_tags += compare_tags(a.tags, b.tags, f"{at} tags", sa, sb, rep)
            rep.aliases += len(a.aliases)
            if sorted(a.aliases) != sorted(b.aliases):
                rep.differ(f"{at} aliases", f"{sorted(a.aliases)} vs {sorted(b.aliases)}")
            for attr in ("source", "run_id", "model_id", "status", "description", "current_stage"):
                xa, xb = sa.mask.text(str(getattr(a, attr, None))), sb.mask.text(str(getattr(b, attr, None)))
                if xa != xb:
                    rep.differ(f"{at} {attr}", f"{xa!r:.200} vs {xb!r:.200}")


def load_record(root: Path) -> dict[str, Any]:
    path = root / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def cmd_compare(args: argparse.Namespace) -> int:
    roots = [args.a.resolve(), args.b.resolve()]
    records = [load_record(r) for r in roots]
    for root, record in zip(roots, records, strict=True):
        if not root.is_dir():
            sys.exit(f"{root}: not a directory")
        if record.get("returncode") not in (0, None):
            print(f"note: the run in {root} exited {record['returncode']}; comparing what it wrote")
    sa, sb = (Side(r, Masker(r, rec)) for r, rec in zip(roots, records, strict=True))
    rep = Report()
    if (sa.root / "mlruns.db").is_file() and (sb.root / "mlruns.db").is_file():
        ta, tb = open_store(sa), open_store(sb)  # first: it registers the run and model ids the masks replace
        compare_trees(sa.root, sb.root, "", sa, sb, rep, skip=NOT_COMPARED)
        compare_runs(ta, tb, sa, sb, rep)
        compare_registry(ta, tb, sa, sb, rep)
    else:
        rep.differ("mlruns.db", "missing in " + " and ".join(str(r) for r in roots if not (r / "mlruns.db").is_file()))
        compare_trees(sa.root, sb.root, "", sa, sb, rep, skip=NOT_COMPARED)
    for label, record in zip("AB", records, strict=True):
        git = record.get("git", {})
        dirty = len(git.get("uncommitted", []))
        rep.info.append(
            f"{label}: {record.get('repo')} at {str(git.get('commit'))[:12]}"
            f"{f' + {dirty} uncommitted file(s)' if dirty else ''}, kdpipe from {record.get('imported_from')}, "
            f"exit {record.get('returncode')}, {record.get('wall_seconds')} s"
        )
        if record.get("source_digest") != record.get("source_digest_after"):
            rep.info.append(f"{label}: WARNING: the sources it ran changed while it ran")
    rep.settle()
    print_report(roots, rep)
    return 1 if rep.differences else 0


def print_report(roots: list[Path], rep: Report) -> None:
    print(f"same_student compare\n  A: {roots[0]}\n  B: {roots[1]}")
    print(f"  tensors compared (torch.equal): {rep.tensors}" + (f", numpy arrays: {rep.arrays}" if rep.arrays else ""))
    print(f"  files compared: {rep.files} ({rep.identical_bytes} byte-identical); other values compared: {rep.values}")
    print(
        f"  MLflow: {rep.runs} runs, {rep.params} params, {rep.metric_values} metric values, "
        f"{rep.logged_models} logged models"
    )
    print(
        f"  registry: {rep.registered_models} registered model(s), {rep.versions} version(s), "
        f"{rep.registry_tags} tags compared, {rep.aliases} alias(es)"
    )
    print(f"  left out as volatile: {', '.join(sorted(rep.excluded)) or 'nothing'}")
    for line in rep.info:
        print(f"  info: {line}")
    if rep.debug_only:
        print(
            f"  {len(rep.debug_only)} exported file(s) differ only in debug metadata (module paths, source files and "
            "lines in ONNX node metadata and torch.export stack traces); weights and graphs equal:"
        )
        for where in rep.debug_only:
            print(f"    {where}")
        print(f"  {len(rep.explained)} value(s) derived from those files' bytes (sha256, size) differ with them:")
        for where, what in rep.explained:
            print(f"    {where}: {what}")
    if rep.differences:
        print(f"DIFFERENT: {len(rep.differences)} difference(s)")
        for where, what in rep.differences:
            print(f"  - {where}: {what}")
    elif rep.debug_only:
        print("IDENTICAL but for the exported files' debug metadata (above): every tensor, value and tag is the same")
    else:
        print("IDENTICAL: every tensor, file, metric and registry tag compared is the same")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="kdpipe run of a checkout on the reduced budget, every output under OUT")
    run.add_argument("--repo", type=Path, required=True, help="the checkout whose src/kdpipe runs")
    run.add_argument("--out", type=Path, required=True, help="an empty or new directory for every output")
    run.add_argument("--force", action="store_true", help="replace OUT when it holds an earlier output of this script")
    run.add_argument("--pipeline-run-id", default=PIPELINE_RUN_ID, help="fixed, so model files compare byte for byte")
    run.add_argument("--stage", type=Path, default=STAGE, help=f"where the sources are copied to (default {STAGE})")
    run.add_argument("--in-place", action="store_true", help="import DIR/src itself, not a copy (nobody edits it)")
    run.add_argument("-p", "--set", action="append", default=[], metavar="KEY=VALUE", help="a further kdpipe override")
    compare = sub.add_parser("compare", help="exit 0 only when two runs' outputs are identical")
    compare.add_argument("a", type=Path)
    compare.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {"run": cmd_run, "compare": cmd_compare}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
