"""Inference cost, measured the same way for every model and format: each in a fresh process.

A probe is this module run as ``python -m``: it imports only the runtime the format needs (torch for
``pytorch``, onnxruntime for ``onnx`` and ``onnx_int8``, openvino for ``openvino`` and ``openvino_int8``), pins
the thread count, and measures as the torch-free ``kdpipe-probe`` does on a target device, with the same code
(:mod:`kdpipe_probe.timing`: memory, batch-1 latency p50/p95, throughput; :mod:`kdpipe_probe.runtimes`: the ONNX
Runtime and OpenVINO loaders). Every input is float32 ``N x C x H x W`` in [0, 1], the exported contract; the
eager model gets the same wrapper with the normalisation baked in. This module imports nothing heavy at the
top, so the ONNX probe's memory figure carries no torch. A teacher stored in its own form (TorchScript, a
``torch.export`` program, a state dict, an MLflow folder: :mod:`kdpipe.teacher.stored`) is probed as stored, read by
:func:`kdpipe.teacher.formats.load` and fed as every step feeds it (:func:`stored_teacher`).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from kdpipe_probe import process, runtimes, timing

FORMATS = ("pytorch", *runtimes.FORMATS)


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
    try:
        figures = process.fresh(__name__, args, threads)
    except process.ProbeProcessError as exc:
        raise KdpipeError(f"{path}: the {fmt} cost probe failed ({exc})") from None
    parts = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    if path.suffix == ".xml":  # OpenVINO IR: the weights are beside the graph
        parts.append(path.with_suffix(".bin"))
    size = sum(f.stat().st_size for f in parts)
    return {**figures, "size_kb": size / 1024}


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
        base = timing.rss_mb()
        net = stored_teacher(path, reading, args) if reading else load_model(path)[0]
        model = ServingClassifier(net, args["mean"], args["std"]).eval()

        def run(x: Any) -> Any:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()

        return base, run
    return runtimes.load(Path(args["path"]), args["threads"])


def probe(args: dict[str, Any]) -> dict[str, float]:
    """The child's side: memory, then latency and throughput (:func:`kdpipe_probe.timing.time_model`)."""
    base, run = _load(args)
    return timing.time_model(
        base, run, tuple(args["shape"]), batch_size=args["batch_size"], repeats=args["repeats"], warmup=args["warmup"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="one inference-cost probe (kdpipe's own use)")
    parser.add_argument("args", help="the probe's arguments as JSON")
    print(json.dumps(probe(json.loads(parser.parse_args().args))))


if __name__ == "__main__":
    main()
