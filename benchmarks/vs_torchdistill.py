"""kdpipe's srd distillation step against torchdistill's ``SRDLoss`` step: images/s and peak memory.

Both sides do the same work on the same batches: the frozen teacher's no-grad forward, the
student's forward and backward through a linear projector and a non-affine BatchNorm on both
feature sets, the loss CE + KL(T=1) + 2·log Σ|f_s - f_t|^4, and one SGD step. Both start from the
same weights (the projector too), and the first batch's loss is printed for both as a check.

- kdpipe: :class:`kdpipe.distill.srd.SRD`, the module the engine trains, stepped as the engine does.
- torchdistill (``pip install -c requirements.lock -r requirements-bench.txt``): its own
  ``DistillationBox`` built from a config like its ImageNet SRD sample: ``SRDModelWrapper`` on both
  models (hooks on the last feature map, mean pooling, projector, BatchNorm1d(eps=1e-4,
  affine=False)), ``WeightedSumLoss`` of ``CrossEntropyLoss`` and ``SRDLoss(exponent=4)``, stepped
  with ``forward_process`` and ``post_forward_process``. kdpipe's models are wrapped as they are.

Throughput: timed blocks alternate between the two in one process; the median block counts. Peak
memory: on CUDA ``torch.cuda.max_memory_allocated`` over the steps, in this process; on CPU each
side runs in a fresh subprocess and reports how far its peak resident set (``ru_maxrss``) rose
above its resident set just before the first step (tracemalloc cannot see torch's allocations).

    .venv/bin/python benchmarks/vs_torchdistill.py [--teacher resnet20 --student resnet8] [--batch-size 64]
        [--threads 2] [--repeats 9] [--device auto]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kdpipe.distill.srd import SRD, SRDSettings
from kdpipe.models import count_parameters, create_model

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SGD_KWARGS = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}


def build_models(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = create_model(args.teacher, args.classes, args.channels).to(device).eval()
    student = create_model(args.student, args.classes, args.channels).to(device)
    return teacher, student


def kdpipe_side(teacher: nn.Module, student: nn.Module, device: torch.device) -> tuple[Step, Step, nn.Module]:
    """kdpipe's SRD module and the engine's step: forward, zero_grad, backward, SGD step."""
    distiller = SRD(student, teacher, SRDSettings()).to(device)
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), **SGD_KWARGS)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return distiller(x, y).loss

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = distiller(x, y)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return out.loss

    distiller.train()
    return step, loss, distiller.projector


def _wrapper(feature_module: str, d_teacher: int, d_student: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "input_module": {"path": f"model.{feature_module}", "io": "output"},
        "norm_kwargs": {"num_features": d_teacher, "eps": 1e-4, "affine": False},
    }
    if d_student is not None:
        kwargs["linear_kwargs"] = {"in_features": d_student, "out_features": d_teacher}
    return {"key": "SRDModelWrapper", "kwargs": kwargs}


def torchdistill_side(
    teacher: nn.Module, student: nn.Module, feature_module: str, device: torch.device
) -> tuple[Step, Step, nn.Module]:
    """torchdistill's DistillationBox with SRDModelWrapper and SRDLoss, as its SRD sample config sets it up."""
    from torchdistill.core.distillation import DistillationBox

    d_t, d_s = teacher.feature_dim, student.feature_dim
    hooks = {"input": [], "output": [f"model.{feature_module}", "norm_layer"]}
    srd_kwargs = {
        "student_feature_module_path": "norm_layer", "student_feature_module_io": "output",
        "teacher_feature_module_path": "norm_layer", "teacher_feature_module_io": "output",
        "student_linear_module_path": ".", "student_linear_module_io": "output",
        "teacher_linear_module_path": ".", "teacher_linear_module_io": "output",
        "exponent": 4.0, "temperature": 1.0, "reduction": "batchmean",
    }  # fmt: skip
    ce = {
        "criterion": {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}},
        "criterion_wrapper": {"key": "SimpleLossWrapper", "kwargs": {
            "input": {"is_from_teacher": False, "module_path": ".", "io": "output"}, "target": {"uses_label": True}}},
        "weight": 1.0,
    }  # fmt: skip
    config = {
        "num_epochs": 1,
        "teacher": {
            "forward_proc": "forward_batch_only",
            "auxiliary_model_wrapper": _wrapper(feature_module, d_t, None),
            "sequential": [],
            "forward_hook": hooks,
            "requires_grad": False,
        },
        "student": {"forward_proc": "forward_batch_only", "auxiliary_model_wrapper": _wrapper(feature_module, d_t, d_s),
                    "sequential": [], "frozen_modules": [], "forward_hook": hooks, "requires_grad": True},
        "optimizer": {"key": "SGD", "kwargs": dict(SGD_KWARGS)},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {
            "ce": ce, "srd": {"criterion": {"key": "SRDLoss", "kwargs": srd_kwargs}, "weight": 1.0}}}},
    }  # fmt: skip
    box = DistillationBox(teacher, student, {}, config, device, None, False, 1)
    box.pre_epoch_process(epoch=0)
    box.teacher_model.model.eval()  # the frozen teacher; its wrapper's BatchNorm1d uses batch statistics

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return box.forward_process(x, y)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = box.forward_process(x, y)
        box.post_forward_process(value)
        return value

    return step, loss, box.student_model.linear


def build_sides(args: argparse.Namespace, device: torch.device) -> dict[str, tuple[Step, Step]]:
    """Both sides from the same initial weights: teacher, student and projector."""
    teacher, student = build_models(args, device)
    ours_step, ours_loss, projector = kdpipe_side(copy.deepcopy(teacher), copy.deepcopy(student), device)
    theirs_step, theirs_loss, linear = torchdistill_side(
        copy.deepcopy(teacher), copy.deepcopy(student), args.feature_module, device
    )
    linear.load_state_dict(projector.state_dict())
    return {"kdpipe": (ours_step, ours_loss), "torchdistill": (theirs_step, theirs_loss)}


def make_batches(args: argparse.Namespace, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    shape = (args.batch_size, args.channels, args.size, args.size)
    return [
        (
            torch.randn(shape, generator=gen).to(device),
            torch.randint(0, args.classes, (args.batch_size,), generator=gen).to(device),
        )
        for _ in range(args.steps)
    ]


def timed_block(step: Step, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for x, y in batches:
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return sum(len(y) for _, y in batches) / (time.perf_counter() - start)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def memory_probe(args: argparse.Namespace, side: str) -> None:
    """Subprocess: build one side, then report its peak RSS rise over warm-up and timed steps."""
    device = torch.device("cpu")
    step = build_sides(args, device)[side][0]
    batches = make_batches(args, device)
    before = _rss_bytes()
    for x, y in batches[: args.warmup] + batches:
        step(x, y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"side": side, "peak_rise_bytes": peak - before}))


def cpu_memory(args: argparse.Namespace, side: str) -> int:
    cmd = [sys.executable, __file__, "--memory-probe", side, *sys.argv[1:]]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_rise_bytes"])


def cuda_memory(step: Step, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for x, y in batches:
        step(x, y)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet20", help="default: resnet20 (the GPU run uses resnet32x4)")
    parser.add_argument("--student", default="resnet8", help="default: resnet8 (the GPU run uses resnet8x4)")
    parser.add_argument(
        "--feature-module", default="layers", help="the models' last feature-map module (default: layers)"
    )
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=32, help="input height and width (default: 32, CIFAR)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="steps per timed block (default: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (default: 2)")
    parser.add_argument("--repeats", type=int, default=9, help="timed blocks per side, alternating (default: 9)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--memory-probe", choices=("kdpipe", "torchdistill"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args, args.memory_probe)
        return
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    import torchdistill

    sides = build_sides(args, device)
    batches = make_batches(args, device)
    with torch.device("meta"):
        teacher, student = (create_model(a, args.classes, args.channels) for a in (args.teacher, args.student))
    print(
        f"torch {torch.__version__}, torchdistill {torchdistill.__version__}, device "
        f"{torch.cuda.get_device_name(device) if cuda else 'cpu'}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"teacher {args.teacher} ({count_parameters(teacher):,} params) -> student {args.student} "
        f"({count_parameters(student):,}), batch {args.batch_size}, input {args.channels}x{args.size}x{args.size} "
        f"random, {args.classes} classes, SGD {SGD_KWARGS}, fp32"
    )
    x, y = batches[0]
    with torch.no_grad():
        losses = {name: float(loss(x, y)) for name, (_, loss) in sides.items()}
    print("loss on the first batch, same weights: " + ", ".join(f"{k} {v:.5f}" for k, v in losses.items()))
    for step, _ in sides.values():
        for bx, by in batches[: args.warmup]:
            step(bx, by)
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, (step, _) in sides.items():
            runs[name].append(timed_block(step, batches, device))
    ips = {name: statistics.median(v) for name, v in runs.items()}
    print(
        f"{args.repeats} timed blocks of {args.steps} steps per side, alternating, "
        f"after {args.warmup} warm-up steps; median"
    )
    print(f"kdpipe srd step: images_per_s={ips['kdpipe']:.1f}")
    print(f"torchdistill SRDLoss step: images_per_s={ips['torchdistill']:.1f}")
    print(f"speed ratio kdpipe/torchdistill={ips['kdpipe'] / ips['torchdistill']:.2f}x")
    if cuda:
        peak = {name: cuda_memory(step, batches, device) for name, (step, _) in sides.items()}
        what = "torch.cuda.max_memory_allocated over the steps, above the memory allocated before them"
    else:
        peak = {name: cpu_memory(args, name) for name in sides}
        what = "peak RSS rise over warm-up and timed steps, each side in a fresh subprocess"
    print(f"peak memory ({what}): " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in peak.items()))
    print(f"memory ratio torchdistill/kdpipe={peak['torchdistill'] / max(1, peak['kdpipe']):.2f}x")


if __name__ == "__main__":
    main()
