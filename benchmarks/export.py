"""The student's batch-1 latency as eager PyTorch, ONNX Runtime fp32/int8 and OpenVINO fp32/int8, in one process.

The five run on the same images at the same thread count (``--threads``, default 1: the common
edge case; torch's intra- and inter-op threads, ONNX Runtime's intra-op threads and OpenVINO's
INFERENCE_NUM_THREADS are all set to it). Measurements are interleaved: each round times every format
once, in an order that rotates from round to round, so a burst of load from another process hits all
alike. OpenVINO's IR is made from the same ONNX fp32 file and its int8 by NNCF on the same calibration
images, as validate makes them. It prints the median latency of each and the ratios against eager:

    format=<name> p50_ms=<x> speedup_vs_eager=<eager p50 / this p50>

The model is ``--model`` (default: the trained student at ``paths.student``) or, with ``--untrained``,
a fresh ``student.arch`` (latency does not depend on the weights; int8 calibration then uses random
images). The exports go to a temporary directory.

    python benchmarks/export.py [--threads 1] [--rounds 30] [--calls 20] [--untrained]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch

from kdpipe.config import DEFAULT_PARAMS, load_params
from kdpipe.data.prepared import load_prepared
from kdpipe.deploy import onnx as export
from kdpipe.deploy import openvino as ov
from kdpipe.deploy.deployment import input_shape
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.models.serving import ServingClassifier


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--params", default=str(DEFAULT_PARAMS), help="params file (paths.student, student.arch)")
    p.add_argument("--model", type=Path, help="a kdpipe model.pt (default: paths.student/model.pt)")
    p.add_argument("--untrained", action="store_true", help="a fresh student.arch instead of a trained file")
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime (default 1)")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds; medians over rounds are reported")
    p.add_argument("--calls", type=int, default=20, help="batch-1 calls timed per format per round")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    params = load_params(args.params)
    prepared = Path(params.paths.prepared)
    if (prepared / "manifest.json").exists():
        data = load_prepared(prepared)
        m, calibration = data.manifest, data.split("train")[0][: params.export.calibration_size]
    else:
        m = {"mean": [0.5], "std": [0.25], "shape": [1, 28, 28], "classes": list(range(10))}
        calibration = torch.randint(0, 256, (params.export.calibration_size, 1, 28, 28), dtype=torch.uint8)
    shape = input_shape(m)
    if args.untrained:
        net, what = (
            create_model(params.student.arch, len(m["classes"]), shape[0]).eval(),
            f"untrained {params.student.arch}",
        )
    else:
        path = args.model or Path(params.paths.student) / MODEL_FILE
        net, what = load_model(path)[0], str(path)
    eager = ServingClassifier(net, m["mean"], m["std"]).eval()
    image = torch.rand(1, *shape)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export.to_onnx(net, m["mean"], m["std"], shape, Path(tmp) / "student.onnx", what)
        int8 = export.quantize_int8(fp32, calibration, Path(tmp) / "student_int8.onnx", what)
        sessions = {
            name: export.session(path, args.threads) for name, path in (("onnx_fp32", fp32), ("onnx_int8", int8))
        }
        ir = ov.from_onnx(fp32, Path(tmp) / "student_openvino.xml", {})
        ir_int8 = ov.quantize_int8(ir, calibration, Path(tmp) / "student_openvino_int8.xml", what)
        compiled = {"openvino_fp32": ov.compiled(ir, args.threads), "openvino_int8": ov.compiled(ir_int8, args.threads)}
        array = image.numpy()

        def eager_call() -> None:
            with torch.inference_mode():
                eager(image)

        calls: dict[str, Callable[[], object]] = {"eager": eager_call}
        calls.update({name: (lambda s=s: s.run(None, {export.INPUT: array})) for name, s in sessions.items()})
        calls.update({name: (lambda c=c: c(array)) for name, c in compiled.items()})
        times: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for _ in range(3):  # warm-up
            for call in calls.values():
                call()
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                for _ in range(args.calls):
                    calls[name]()
                times[name].append(1000 * (time.perf_counter() - start) / args.calls)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"model={what} threads={args.threads} rounds={args.rounds} calls={args.calls} torch={torch.__version__} "
        f"onnxruntime={ort.__version__} openvino={ov.runtime().__version__}"
    )
    for name, value in p50.items():
        print(f"format={name} p50_ms={value:.4f} speedup_vs_eager={p50['eager'] / value:.2f}")


if __name__ == "__main__":
    main()
