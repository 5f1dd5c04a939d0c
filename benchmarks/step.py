"""What distillation costs per training step, against its two unavoidable parts, in one process.

On the same batches it times (a) the student's own train step (forward, cross-entropy, backward,
SGD step), (b) the teacher's no-grad forward, and (c) the full step of each method through
kdpipe's Distiller and optimiser. It prints one line per method:

    method=<name> images_per_s=<x> overhead=<time_c / (time_a + time_b)>

and (d) kd and srd replaying the teacher from a teacher cache (:mod:`kdpipe.teacher.cache`), with no
teacher forward at all, against the student step alone:

    method=<name>_cached images_per_s=<x> overhead_vs_student_step=<time_d / time_a>

An overhead of 1.0 means the method adds nothing beyond running both networks; the recipe's
projector, BatchNorms and LogSum should stay within 10 % of that on CPU. Measurements are
interleaved: each round times every measurement once, in an order that rotates from round to
round, and the overhead is the median over rounds of that round's ratio, so a burst of load from
another process shifts numerator and denominator alike. images_per_s is the median over rounds.

    python benchmarks/step.py [--threads 2] [--batch-size 256] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from kdpipe.config import DEFAULT_PARAMS, Params, load_params
from kdpipe.data.loader import InMemoryLoader
from kdpipe.data.prepared import load_prepared
from kdpipe.distill import create_distiller
from kdpipe.infra.errors import KdpipeError
from kdpipe.models import FeatureClassifier, create_model
from kdpipe.teacher.cache import TeacherCache, TeacherOutputs
from kdpipe.training.loop import build_optimizer
from kdpipe.training.runtime import Runtime

METHODS = ("scratch", "kd", "fitnet", "dkd", "lskd", "dist", "vkd", "srd")
CACHED = ("kd", "srd")  # replaying a teacher cache: measured against the student step alone
Batch = tuple[torch.Tensor, torch.Tensor]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--params", default=str(DEFAULT_PARAMS), help="params file for the defaults below")
    p.add_argument("--teacher", help="teacher arch (default: teacher.arch)")
    p.add_argument("--student", help="student arch (default: student.arch)")
    p.add_argument("--batch-size", type=int, help="default: train.batch_size")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto picks cuda when present")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, the CI machine's cores)")
    p.add_argument("--batches", type=int, default=2, help="batches per timed pass")
    p.add_argument("--repeats", type=int, default=11, help="timed rounds; medians over rounds are reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument(
        "--synthetic", action="store_true", help="random images of the data set's shape instead of real ones"
    )
    return p.parse_args(argv)


def make_batches(
    params: Params, n_batches: int, batch_size: int, device: torch.device, synthetic: bool
) -> tuple[list[Batch], int, str]:
    """Real prepared training batches (augmented as in training) or random ones of the same shape."""
    prepared = Path(params.paths.prepared)
    if not synthetic and (prepared / "manifest.json").exists():
        data = load_prepared(prepared)
        x, y = data.split("train")
        mean, std, k, what = data.manifest["mean"], data.manifest["std"], data.num_classes, f"prepared {prepared}"
        hflip = bool(data.manifest["hflip"])
    else:
        gen = torch.Generator().manual_seed(0)
        n = n_batches * batch_size
        x = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
        y = torch.randint(0, 10, (n,), generator=gen)
        mean, std, k, what, hflip = [0.5], [0.25], 10, "synthetic 1x28x28", True
    loader = InMemoryLoader(
        x,
        y,
        batch_size,
        mean,
        std,
        train=True,
        crop_padding=params.data.crop_padding,
        hflip=hflip,
        seed=0,
        device=device,
        channels_last=params.runtime.channels_last,
    )
    batches = [b for _, b in zip(range(n_batches), loader, strict=False) if len(b[1]) == batch_size]
    if len(batches) < n_batches:
        raise SystemExit(f"only {len(batches)} full batches of {batch_size} in {what}; lower --batches or --batch-size")
    return batches, k, what


def student_step(student: FeatureClassifier, params: Params, runtime: Runtime) -> Callable[[Batch], None]:
    """(a): what training the student alone costs."""
    student.train()
    opt = build_optimizer(list(student.parameters()), params.train)

    def step(batch: Batch) -> None:
        x, y = batch
        with runtime.autocast:
            logits = student(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def teacher_forward(teacher: FeatureClassifier, runtime: Runtime) -> Callable[[Batch], None]:
    """(b): the teacher's share, exactly the call the distillers make."""
    teacher.eval()

    @torch.no_grad()
    def step(batch: Batch) -> None:
        with runtime.autocast:
            teacher.forward_with_features(batch[0])

    return step


def distill_step(
    method: str,
    student: FeatureClassifier,
    teacher: FeatureClassifier | TeacherOutputs,
    params: Params,
    runtime: Runtime,
) -> Callable[[Batch], None]:
    """(c): one training step of ``method`` as the engine runs it."""
    hyperparameters = params.method.model_copy(update={"name": method}).hyperparameters()
    distiller = create_distiller(method, student, teacher if method != "scratch" else None, **hyperparameters)
    distiller = distiller.to(runtime.device).train()
    opt = build_optimizer(distiller.trainable_parameters(), params.train)

    def step(batch: Batch) -> None:
        with runtime.autocast:
            out = distiller(*batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    return step


def cached_step(
    method: str,
    student: FeatureClassifier,
    teacher: FeatureClassifier,
    params: Params,
    runtime: Runtime,
    batches: list[Batch],
    directory: Path,
) -> Callable[[Batch], None]:
    """(d): ``method`` replaying the teacher's outputs from a teacher cache (recorded here once, read back
    from disk at the start of every pass, as a distill run reads each epoch's file)."""
    key = {"benchmark": method, "dtype": "float32", "epochs": 1}
    recorder = TeacherOutputs(teacher, TeacherCache(directory, key), record=True, feature_dim=teacher.feature_dim)
    recorder.begin_epoch(0)
    with torch.no_grad(), runtime.autocast:
        for x, y in batches:
            recorder.expect(y)
            recorder.forward_with_features(x)
    recorder.end_epoch()
    replay = TeacherOutputs(None, TeacherCache(directory, key), record=False, feature_dim=teacher.feature_dim)
    inner = distill_step(method, student, replay, params, runtime)
    calls = 0

    def step(batch: Batch) -> None:
        nonlocal calls
        if calls % len(batches) == 0:
            replay.begin_epoch(0)
        calls += 1
        inner(batch)

    return step


def timed_pass(step: Callable[[Batch], None], batches: list[Batch], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params = load_params(args.params) if Path(args.params).exists() else Params()
    except KdpipeError as exc:
        print(f"step.py: error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("step.py: error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    runtime = Runtime(device=device, amp=params.runtime.amp and use_cuda)
    teacher_arch = args.teacher or params.teacher.arch
    student_arch = args.student or params.student.arch
    batch_size = args.batch_size or params.train.batch_size

    batches, k, what = make_batches(params, args.batches, batch_size, device, args.synthetic)
    in_channels = batches[0][0].shape[1]
    torch.manual_seed(0)
    memory_format = torch.channels_last if params.runtime.channels_last else torch.contiguous_format  # as training
    teacher = create_model(teacher_arch, k, in_channels).to(device, memory_format=memory_format)
    student = create_model(student_arch, k, in_channels).to(device, memory_format=memory_format)
    cache_dir = Path(tempfile.mkdtemp(prefix="kdpipe-step-cache-"))
    measurements: dict[str, Callable[[Batch], None]] = {
        "student_step": student_step(copy.deepcopy(student), params, runtime),
        "teacher_forward": teacher_forward(teacher, runtime),
        **{m: distill_step(m, copy.deepcopy(student), teacher, params, runtime) for m in METHODS},
        **{
            f"{m}_cached": cached_step(m, copy.deepcopy(student), teacher, params, runtime, batches, cache_dir)
            for m in CACHED
        },
    }
    names = list(measurements)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.warmup + args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            elapsed = timed_pass(measurements[name], batches, device)
            if r >= args.warmup:
                times[name].append(elapsed)

    images = len(batches) * batch_size
    per_image = {name: statistics.median(t) / images for name, t in times.items()}
    base = [a + b for a, b in zip(times["student_step"], times["teacher_forward"], strict=True)]
    overhead = {m: statistics.median(c / ab for c, ab in zip(times[m], base, strict=True)) for m in METHODS}
    print(
        f"threads={torch.get_num_threads()} device={device} memory_format={str(memory_format).split('.')[-1]} "
        f"batch_size={batch_size} teacher={teacher_arch} "
        f"student={student_arch} data={what} batches_per_pass={len(batches)} rounds={args.repeats} (medians)"
    )
    print(f"baseline=student_step images_per_s={1 / per_image['student_step']:.1f}")
    print(f"baseline=teacher_forward images_per_s={1 / per_image['teacher_forward']:.1f}")
    for method in METHODS:
        print(f"method={method} images_per_s={1 / per_image[method]:.1f} overhead={overhead[method]:.3f}")
    for method in CACHED:
        alone = statistics.median(c / a for c, a in zip(times[f"{method}_cached"], times["student_step"], strict=True))
        print(
            f"method={method}_cached images_per_s={1 / per_image[f'{method}_cached']:.1f} "
            f"overhead_vs_student_step={alone:.3f}"
        )
    shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
