"""The runtimes an exported student runs on: ONNX Runtime for ``.onnx``, OpenVINO for ``.xml`` (IR), on the CPU.

Each runtime is imported by the function that needs it, so that a probe's memory figure carries only its own
runtime. A file's ``kdpipe.*`` metadata (ONNX ``metadata_props``, OpenVINO ``rt_info``) says its classes, input
shape and precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdpipe_probe.timing import Run, rss_mb

FORMATS = ("onnx", "onnx_int8", "openvino", "openvino_int8")
CLASSES, INPUT_SHAPE, PRECISION = "kdpipe.classes", "kdpipe.input_shape", "kdpipe.precision"


class ProbeError(Exception):
    """A file the probe cannot read or run, or images it cannot score: one line, naming it."""


def metadata(path: Path) -> dict[str, str]:
    """The file's ``kdpipe.*`` metadata (empty for a file kdpipe did not write)."""
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        info = model.get_rt_info()
        if "kdpipe" not in info:
            return {}
        return {key: model.get_rt_info(["kdpipe", key]).astype(str) for key in dict(info["kdpipe"])}
    import onnxruntime as ort

    try:
        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as exc:  # onnxruntime raises its own types
        raise ProbeError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:300]})") from None
    return {k: v for k, v in meta.custom_metadata_map.items() if k.startswith("kdpipe.")}


def format_of(path: Path, props: dict[str, str]) -> str:
    """``onnx`` or ``openvino``, with ``_int8`` when the file's metadata says int8."""
    if path.suffix not in (".onnx", ".xml"):
        raise ProbeError(f"{path}: expected an ONNX file (.onnx) or OpenVINO IR (.xml)")
    base = "onnx" if path.suffix == ".onnx" else "openvino"
    return f"{base}_int8" if props.get(PRECISION) == "int8" else base


def load(path: Path, threads: int) -> tuple[float, Run]:
    """The RSS before loading, and a callable float32 array -> logits, for the file at ``path``."""
    import numpy  # noqa: F401  the runtime's own dependency: part of the runtime, not the model

    if path.suffix == ".xml":
        try:
            import openvino as ov
        except ImportError as exc:
            raise ProbeError(
                f"{path}: OpenVINO IR needs openvino ({exc}); pip install 'kdpipe-probe[openvino]'"
            ) from None
        base = rss_mb()
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        return base, lambda x: compiled(x)[0]
    import onnxruntime as ort

    base = rss_mb()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return base, lambda x: sess.run(None, {name: x})[0]


def input_shape(path: Path, props: dict[str, str]) -> tuple[int, ...]:
    """(C, H, W) from the file's metadata, else from its graph's input (a fixed shape after the batch axis)."""
    if INPUT_SHAPE in props:
        return tuple(int(s) for s in json.loads(props[INPUT_SHAPE])[1:])
    raise ProbeError(f"{path}: no {INPUT_SHAPE} in its metadata; export it with kdpipe (validate or export)")


def runtime_version(fmt: str) -> str:
    """The runtime and its version, for the result."""
    if fmt.startswith("openvino"):
        import openvino

        return f"openvino {openvino.__version__}"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def describe(props: dict[str, str]) -> dict[str, Any]:
    """The metadata a result carries: classes, and the registered version the file belongs to when it has one."""
    keep = (CLASSES, "kdpipe.registered_model", "kdpipe.registered_version", "kdpipe.data_sha256", PRECISION)
    return {key: props[key] for key in keep if key in props}
