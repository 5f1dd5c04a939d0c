"""The distillation step on a lent GPU: resnet32x4 -> resnet8x4 on CIFAR-sized input, eager and compiled.

For each mode (eager, then ``torch.compile``) it measures, on the same random 3x32x32 batches
(several, rotated, so the cache does not flatter anyone), with bf16 autocast and channels_last as
the engine uses them on CUDA:

  (a) the student's train step alone (kdpipe's ``Scratch``: CE, backward, the engine's SGD step),
  (b) the teacher's no-grad forward alone,
  (c) the full srd step (kdpipe's ``SRD``: teacher forward, student and projector forward and
      backward, the loss in float32, SGD step),

and prints images/s of each and the overhead c/(a+b), in time per image: 1.0 means the srd step
costs exactly a student step plus a teacher forward. Blocks of steps alternate a, b, c; the median
block counts. It imports kdpipe's models, distillers and engine, which need torch and pydantic only.

    python3 benchmarks/gpu_step.py [--batch-size 256] [--no-compile] [--json $OUT/gpu_step.json]

Must finish in under 3 minutes on an H100 (the compile of three graphs is most of it).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdpipe.config import TrainConfig
from kdpipe.distill.scratch import Scratch
from kdpipe.distill.srd import SRD, SRDSettings
from kdpipe.models import count_parameters, create_model
from kdpipe.training.loop import build_optimizer

Run = Callable[[torch.Tensor, torch.Tensor], None]
STEPS = ("student", "teacher", "srd")


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def train_step(module: nn.Module, forward: nn.Module, device: torch.device, amp: bool) -> Run:
    """What the engine does per batch: autocast forward, zero_grad, backward, the engine's SGD step.

    ``forward`` is ``module`` itself or its compiled wrapper; the optimiser holds the real parameters.
    """
    optimizer = build_optimizer(module.trainable_parameters(), TrainConfig())  # type: ignore[operator]

    def run(x: torch.Tensor, y: torch.Tensor) -> None:
        with _autocast(device, amp):
            out = forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    return run


def teacher_forward(teacher: nn.Module, device: torch.device, amp: bool) -> Run:
    def run(x: torch.Tensor, _y: torch.Tensor) -> None:
        with torch.no_grad(), _autocast(device, amp):
            teacher(x)

    return run


def build(args: argparse.Namespace, device: torch.device, compiled: bool) -> dict[str, Run]:
    """Fresh models per mode, so the compiled mode starts from the same weights as the eager one."""
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    teacher = create_model(args.teacher, args.classes, 3).to(device, memory_format=fmt).eval()
    student = create_model(args.student, args.classes, 3).to(device, memory_format=fmt)
    scratch = Scratch(copy.deepcopy(student)).to(device).train()
    srd = SRD(copy.deepcopy(student), teacher, SRDSettings()).to(device).train()

    def maybe(module: nn.Module) -> nn.Module:
        return torch.compile(module, backend=args.backend) if compiled else module  # type: ignore[return-value]

    return {
        "student": train_step(scratch, maybe(scratch), device, args.amp),
        "teacher": teacher_forward(maybe(teacher), device, args.amp),
        "srd": train_step(srd, maybe(srd), device, args.amp),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def block(run: Run, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        run(*batches[i % len(batches)])
    sync(device)
    return steps * len(batches[0][1]) / (time.perf_counter() - start)


def measure_mode(args: argparse.Namespace, device: torch.device, compiled: bool, batches: list[Any]) -> dict[str, Any]:
    runs = build(args, device, compiled)
    mode = f"compile[{args.backend}]" if compiled else "eager"
    warm: dict[str, float] = {}
    for name in STEPS:
        start = time.perf_counter()
        for i in range(args.warmup):
            runs[name](*batches[i % len(batches)])
        sync(device)
        warm[name] = time.perf_counter() - start
    ips: dict[str, list[float]] = {name: [] for name in STEPS}
    peak: dict[str, int] = {}
    for r in range(args.repeats):
        for name in STEPS:
            if device.type == "cuda" and r == 0:
                torch.cuda.reset_peak_memory_stats(device)
            ips[name].append(block(runs[name], batches, args.steps, device))
            if device.type == "cuda" and r == 0:
                peak[name] = torch.cuda.max_memory_allocated(device)
    med = {name: statistics.median(v) for name, v in ips.items()}
    overhead = (1 / med["srd"]) / (1 / med["student"] + 1 / med["teacher"])
    for name in STEPS:
        mem = f" peak_mem_MiB={peak[name] / 2**20:.0f}" if name in peak else ""
        print(f"mode={mode} step={name} images_per_s={med[name]:.0f} warmup_s={warm[name]:.1f}{mem}", flush=True)
    print(f"mode={mode} overhead=c/(a+b)={overhead:.3f}", flush=True)
    return {"mode": mode, "images_per_s": med, "all_blocks": ips, "warmup_seconds": warm, "peak_memory_bytes": peak,
            "overhead": overhead}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block (default: 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per step kind (default: 5)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first; they include compiling")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu only to smoke-test the script")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default: inductor)")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="float32 instead of bf16 autocast")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--threads", type=int, default=4, help="torch CPU threads (default: 4)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    batches = [
        (torch.randn(args.batch_size, 3, 32, 32, generator=gen).to(device, memory_format=fmt),
         torch.randint(0, args.classes, (args.batch_size,), generator=gen).to(device))
        for _ in range(4)
    ]  # fmt: skip
    with torch.device("meta"):
        sizes = {a: count_parameters(create_model(a, args.classes, 3)) for a in (args.teacher, args.student)}
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"device: {name}; torch {torch.__version__}; {date}; cudnn.benchmark "
        f"{torch.backends.cudnn.benchmark}; torch CPU threads {torch.get_num_threads()}",
        flush=True,
    )
    print(
        f"setup: teacher {args.teacher} ({sizes[args.teacher]:,} params) -> student {args.student} "
        f"({sizes[args.student]:,}), batch {args.batch_size}, input 3x32x32 random (4 batches rotated), "
        f"{'bf16 autocast' if args.amp else 'fp32'}, {'channels_last' if args.channels_last else 'contiguous'}, "
        f"{args.repeats} blocks of {args.steps} steps per kind after {args.warmup} warm-up steps, median",
        flush=True,
    )
    settings = {k: str(v) for k, v in vars(args).items()}
    results = {"device": name, "torch": torch.__version__, "date": date, "args": settings, "modes": []}
    for compiled in (False, True) if not args.no_compile else (False,):
        results["modes"].append(measure_mode(args, device, compiled, batches))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
