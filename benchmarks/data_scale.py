"""Bounded memory at scale: prepare, then stream one epoch with the teacher cache recording, for N and 10 x N
images at 224 px, in one run.

The images are ``scripts/line_camera_set.py``'s JPEG frames (320 x 240, Fashion-MNIST upsampled as a line camera
would see it), prepared into the disk store (``data.store: disk``, ``resize: shorter_side``, stored at 256) by
``data.workers`` processes. Each phase runs in a fresh process that reports its own peak resident set (VmHWM):
the import baseline (kdpipe's steps and torch, nothing done), the prepare step, and the training loop (the
teacher measured on test, then one epoch of srd over the whole train split, the teacher-output cache recording
it). The claim to check: the 10 x N set's peaks are at most 1.3 x the N set's. Not part of CI (it takes minutes
and times things on a shared machine).

    .venv/bin/python benchmarks/data_scale.py [--n 5000] [--factor 10] [--work /tmp/kdpipe-scale] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATIO_GOAL = 1.3


def vmhwm_mb() -> float:
    """This process's peak resident set, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _params(root: Path, work: Path, threads: int, teacher: Path | None = None):
    from kdpipe.config import params_from_dict

    return params_from_dict(
        {
            "data": {
                "source": "imagefolder",
                "root": str(root),
                "image_size": 224,
                "resize": "shorter_side",
                "store": "disk",
                "workers": threads,
            },
            "teacher": {"arch": "cnn8", "source": str(teacher) if teacher else "train"},
            "student": {"arch": "cnn8"},
            "train": {"epochs": 1, "batch_size": 128, "subset": None},
            "cache": {"mode": "auto", "max_gb": 50},
            "runtime": {"num_threads": threads, "progress": "log", "device": "cpu"},
            "tracking": {"enabled": False},
            "paths": {
                k: str(work / k)
                for k in ("prepared", "teacher", "student", "checkpoints", "validation", "promotion", "teacher_cache")
            },
        }
    )


def phase(name: str, root: Path, work: Path, threads: int) -> dict[str, float]:
    """One phase in this process; its figures."""
    import torch

    from kdpipe import steps

    torch.set_num_threads(threads)
    if name == "baseline":
        return {"vmhwm_mb": vmhwm_mb()}
    if name == "prepare":
        start = time.perf_counter()
        manifest = steps.prepare_data(_params(root, work, threads))
        seconds = time.perf_counter() - start
        images = sum(manifest["splits"].values())
        return {"seconds": seconds, "images": images, "images_per_s": images / seconds, "vmhwm_mb": vmhwm_mb()}
    from kdpipe.data.prepared import load_prepared
    from kdpipe.models import create_model
    from kdpipe.models.file import save_model

    data = load_prepared(work / "prepared", verify=False)
    teacher = work / "random-teacher.pt"
    save_model(teacher, create_model("cnn8", data.num_classes, data.in_channels), "cnn8", data.classes, 3)
    params = _params(root, work, threads, teacher)
    steps.evaluate_teacher(params)
    start = time.perf_counter()
    steps.distill(params)
    seconds = time.perf_counter() - start
    views = len(data.split("train")[1])
    return {"seconds": seconds, "views": views, "images_per_s": views / seconds, "vmhwm_mb": vmhwm_mb()}


def run_phase(name: str, root: Path, work: Path, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--phase", name, "--root", str(root), "--work", str(work)]
    done = subprocess.run([*command, "--threads", str(threads)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def make_sets(work: Path, n: int, factor: int) -> dict[int, Path]:
    """The 10 x N frames once, and the N set as hard links to the first N of them."""
    big, small = work / f"frames-{n * factor}", work / f"frames-{n}"
    if not big.exists():  # written beside, then renamed: an interrupted run leaves no partial set
        script, partial = REPO / "scripts" / "line_camera_set.py", big.with_name(f".{big.name}")
        subprocess.run([sys.executable, str(script), "--out", str(partial), "--count", str(n * factor)], check=True)
        partial.rename(big)
    if not small.exists():
        partial = small.with_name(f".{small.name}")
        for f in sorted(big.rglob("*.jpg"), key=lambda p: p.name)[:n]:
            (partial / f.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(f, partial / f.parent.name / f.name)
        partial.rename(small)
    return {n: small, n * factor: big}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="the smaller set's images (default: 5000)")
    parser.add_argument("--factor", type=int, default=10, help="the larger set is this many times N (default: 10)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kdpipe-scale"), help="frames and stores go here")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and decoding processes (default: 2)")
    parser.add_argument("--phase", choices=("baseline", "prepare", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.root, args.work, args.threads)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    sets = make_sets(args.work, args.n, args.factor)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch threads and "
          f"decoding processes: {args.threads}; frames 320x240 JPEG, stored at 256, trained at 224")  # fmt: skip
    base = run_phase("baseline", sets[args.n], args.work, args.threads)
    print(f"import baseline (kdpipe steps and torch, nothing done): VmHWM {base['vmhwm_mb']:.0f} MB")
    found: dict[int, dict[str, dict[str, float]]] = {}
    for n, root in sets.items():
        work = args.work / f"run-{n}"
        found[n] = {p: run_phase(p, root, work, args.threads) for p in ("prepare", "train")}
        for p, f in found[n].items():
            print(f"{n:>7,} images  {p:<8} VmHWM {f['vmhwm_mb']:>6.0f} MB  {f['images_per_s']:>6.0f} images/s  "
                  f"{f['seconds']:>7.1f} s")  # fmt: skip
    small, big = found[args.n], found[args.n * args.factor]
    for p in ("prepare", "train"):
        ratio = big[p]["vmhwm_mb"] / small[p]["vmhwm_mb"]
        verdict = "within" if ratio <= RATIO_GOAL else "OVER"
        print(f"{p}: peak RSS ratio {args.factor}N/N = {ratio:.2f} ({verdict} the {RATIO_GOAL} goal)")


if __name__ == "__main__":
    main()
