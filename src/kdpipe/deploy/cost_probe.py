"""Inference cost, measured the same way for every model and format: each in a fresh process.

A probe is this module run as ``python -m``: it imports only the runtime the format needs (torch for
``pytorch``, onnxruntime for ``onnx`` and ``onnx_int8``, openvino for ``openvino`` and ``openvino_int8``), pins
the thread count, reads its resident memory, loads the model, runs one batch, and reads the process's RSS
high-water mark. Memory is
that high-water mark minus the RSS before the model was loaded: what the model and one inference
add to a process that already has its runtime. Then it times ``warmup`` untimed and ``repeats``
timed batch-1 calls (latency p50 and p95) and the throughput at ``batch_size``. Every input is
float32 ``N x C x H x W`` in [0, 1], the exported contract; the eager model gets the same wrapper
with the normalisation baked in. This module imports nothing heavy at the top, so the ONNX probe's
memory figure carries no torch. A teacher stored in its own form (TorchScript, a ``torch.export`` program, a state
dict, an MLflow folder: :mod:`kdpipe.teacher.stored`) is probed as stored, read by
:func:`kdpipe.teacher.formats.load` and fed as every step feeds it (:func:`stored_teacher`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FORMATS = ("pytorch", "onnx", "onnx_int8", "openvino", "openvino_int8")
THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
THROUGHPUT_REPEATS = 10


def measure(
    path: Path,
    fmt: str,
    shape: tuple[int, int, int],
    *,
    threads: int,
    batch_size: int,
    repeats: int,
    warmup: int,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    teacher: dict[str, Any] | None = None,
) -> dict[str, float]:
    """The cost of the model file ``path`` (or MLflow folder) in format ``fmt``, from a fresh probe process;
    ``mean``/``std`` (the manifest's) wrap an eager model like the exported ones; ``teacher`` (format, arch,
    trust_pickle, preprocess, order) reads a stored foreign teacher instead of a kdpipe model file."""
    from kdpipe.infra.errors import KdpipeError

    args = {
        "path": str(path),
        "format": fmt,
        "shape": list(shape),
        "threads": threads,
        "batch_size": batch_size,
        "repeats": repeats,
        "warmup": warmup,
        "mean": mean,
        "std": std,
        "teacher": teacher,
    }
    env = {**os.environ, **dict.fromkeys(THREAD_ENVS, str(threads))}
    result = subprocess.run(
        [sys.executable, "-m", __name__, json.dumps(args)], capture_output=True, text=True, env=env, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise KdpipeError(
            f"{path}: the {fmt} cost probe failed ({(result.stderr.strip().splitlines() or ['no output'])[-1]})"
        )
    figures: dict[str, float] = json.loads(lines[-1])
    parts = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    if path.suffix == ".xml":  # OpenVINO IR: the weights are beside the graph
        parts.append(path.with_suffix(".bin"))
    size = sum(f.stat().st_size for f in parts)
    return {**figures, "size_kb": size / 1024}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """VmHWM, the RSS high-water mark of this process image: unlike getrusage's ru_maxrss it does not carry
    over the peak of the (large) parent that forked the probe."""
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def stored_teacher(path: Path, reading: dict[str, Any], args: dict[str, Any]) -> Any:
    """The stored foreign teacher at ``path`` as the steps run it: its logits (not its features, which serving
    does not compute) through its own input and class order (:class:`~kdpipe.models.teacher_input.TeacherInput`)."""
    from kdpipe.models.foreign import ForeignClassifier
    from kdpipe.models.teacher_input import InputSpec, TeacherInput
    from kdpipe.teacher import formats

    preprocess = reading["preprocess"] or {}
    size = preprocess.get("image_size")
    loaded = formats.load(
        path, arch=reading["arch"], image_size=size or args["shape"][-1], trust_pickle=reading["trust_pickle"]
    )
    net = loaded.net if loaded.own_features else ForeignClassifier(loaded.net, None)
    if not preprocess and reading["order"] is None:
        return net
    spec = InputSpec(
        tuple(args["mean"]),
        tuple(args["std"]),
        size,
        preprocess.get("resize", "square"),
        preprocess.get("channels"),
        preprocess.get("normalize", "data"),
    )
    return TeacherInput(net, spec, reading["order"])


def _load(args: dict[str, Any]) -> Any:
    """A callable float32 array -> logits for the model, its runtime imported here and nowhere before."""
    if args["format"] == "pytorch":
        import torch

        from kdpipe.models.file import load_model
        from kdpipe.models.serving import ServingClassifier

        torch.set_num_threads(args["threads"])
        torch.set_num_interop_threads(1)
        path, reading = Path(args["path"]), args.get("teacher")
        if reading:  # the reader's imports (a pickled model's pickle module) are the runtime's, not the model's
            import kdpipe.teacher.formats  # noqa: F401

            info = path / "data" / "pickle_module_info.txt"
            if info.exists():
                importlib.import_module(info.read_text().strip() or "pickle")
        base = _rss_mb()
        net = stored_teacher(path, reading, args) if reading else load_model(path)[0]
        model = ServingClassifier(net, args["mean"], args["std"]).eval()

        def run(x: Any) -> Any:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()

        return base, run
    if args["format"].startswith("openvino"):
        import numpy  # noqa: F401  openvino's own dependency: part of the runtime, not the model
        import openvino as ov

        base = _rss_mb()
        config = {"INFERENCE_NUM_THREADS": args["threads"], "INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(args["path"], "CPU", config)
        return base, lambda x: compiled(x)[0]
    import numpy as np  # noqa: F401  onnxruntime's own dependency: part of the runtime, not the model
    import onnxruntime as ort

    base = _rss_mb()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args["threads"], 1
    sess = ort.InferenceSession(args["path"], options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return base, lambda x: sess.run(None, {name: x})[0]


def probe(args: dict[str, Any]) -> dict[str, float]:
    """The child's side: memory, then latency and throughput (see the module docstring)."""
    import numpy as np

    base, run = _load(args)
    rng = np.random.default_rng(0)
    many = rng.random((args["batch_size"], *args["shape"]), dtype=np.float32)
    run(many)
    memory = max(0.0, _peak_mb() - base)
    one = many[:1].copy()
    for _ in range(args["warmup"]):
        run(one)
    times = []
    for _ in range(args["repeats"]):
        start = time.perf_counter()
        run(one)
        times.append(1000 * (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(THROUGHPUT_REPEATS):
        run(many)
    throughput = THROUGHPUT_REPEATS * args["batch_size"] / (time.perf_counter() - start)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {"p50_ms": statistics.median(times), "p95_ms": cuts[94], "throughput": throughput, "memory_mb": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description="one inference-cost probe (kdpipe's own use)")
    parser.add_argument("args", help="the probe's arguments as JSON")
    print(json.dumps(probe(json.loads(parser.parse_args().args))))


if __name__ == "__main__":
    main()
