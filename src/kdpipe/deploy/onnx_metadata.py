"""What an exported ``.onnx`` file says about itself, in its ``metadata_props``: enough to use it without kdpipe.

A deployer copies the file to a line PC and loses MLflow's metadata beside it; the file itself keeps the class
names in output order, the input contract (name, shape with ``-1`` for the batch, layout, dtype, value range, the
normalisation baked in), the opset, the precision and the lineage (kdpipe version, data sha256, teacher), and,
once promote registers it, the registered model and version it belongs to. Every value is a string, as ONNX
requires; lists and mappings are JSON. The key names are :mod:`kdpipe.tracking.tags`'; read them with ``onnx``
alone, e.g. ``{p.key: p.value for p in onnx.load(path).metadata_props}``, then the JSON list under kdpipe.classes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kdpipe import __version__
from kdpipe.deploy.onnx import INPUT, OUTPUT, ExportError
from kdpipe.tracking import tags


def export_props(manifest: dict[str, Any], opset: int, precision: str, teacher: dict[str, str]) -> dict[str, str]:
    """The properties validate writes into every export: the contract from the prepared data's manifest
    (classes, shape, mean/std), the ``opset`` the file was exported at, ``precision`` (fp32, int8) and the
    ``teacher``'s lineage tags."""
    channels, height, width = (int(s) for s in manifest["shape"])
    return {
        tags.CLASSES: json.dumps(list(manifest["classes"])),
        tags.INPUT_NAME: INPUT,
        tags.OUTPUT_NAME: OUTPUT,
        tags.INPUT_SHAPE: json.dumps([-1, channels, height, width]),
        tags.INPUT_LAYOUT: "NCHW",
        tags.INPUT_DTYPE: "float32",
        tags.INPUT_RANGE: "[0, 1]",
        tags.NORMALIZATION: json.dumps(
            {"mean": list(manifest["mean"]), "std": list(manifest["std"]), "applied": "inside the model"}
        ),
        tags.OPSET: str(opset),
        tags.PRECISION: precision,
        tags.VERSION: __version__,
        tags.DATA_SHA256: str(manifest["sha256"]),
        tags.TEACHER: json.dumps(teacher, sort_keys=True),
    }


def registration_props(name: str, version: str) -> dict[str, str]:
    """The properties promote adds to the copy it registers: which registered version the file belongs to."""
    return {tags.REGISTERED_MODEL: name, tags.REGISTERED_VERSION: str(version)}


def stamp(path: Path, props: dict[str, str], out: Path | None = None) -> Path:
    """Write ``props`` into the metadata of the ONNX file ``path`` (replacing same-named ones) at ``out``
    (default: in place, atomically), and check the result with ``onnx.checker``."""
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker rejects the export ({str(exc).splitlines()[0][:300]})") from None
    target = out or path
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    onnx.save(model, str(partial))
    os.replace(partial, target)
    return target
