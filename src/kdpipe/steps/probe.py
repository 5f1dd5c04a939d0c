"""``kdpipe probe`` and ``kdpipe registry attach-probe``: a student's cost measured where it runs, kept beside its
registered version.

The probe itself is the torch-free ``kdpipe-probe`` (:mod:`kdpipe_probe`), the one a line PC installs alone; here
it also takes a ``models:/`` URI (the ONNX sibling's file is downloaded first). A result whose file carries its
registered version in its metadata (every file promote registers does) is attached to that student version as the
tag ``kdpipe.device_probe.<device>``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdpipe_probe.cli import probe_file
from kdpipe_probe.runtimes import ProbeError

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import read_json, write_json
from kdpipe.tracking import registry, tags
from kdpipe.tracking.server import tracking_errors

log = logging.getLogger("kdpipe")
KEPT = ("format", "sha256", "runtime", "threads", "measured_at")


@dataclass(frozen=True)
class AttachRecord:
    """Which version got which device's figures, and a sentence saying so."""

    version: str
    tag: str
    message: str


def probe(
    params: Params, target: str, images: Path | None, device: str | None, probes: int, out: Path | None = None
) -> dict[str, Any]:
    """``kdpipe-probe`` on a file, or on the ONNX file of a registered model a ``models:/`` URI names (the
    tracking server of ``params``), at ``export.threads``, ``export.repeats`` and ``export.warmup``; the result
    is also written to ``out`` when given."""
    cfg = params.export
    with tempfile.TemporaryDirectory(prefix="kdpipe-probe-") as tmp:
        path = Path(target)
        if target.startswith("models:/"):
            with tracking_errors(params, "probe"):
                folder, _ = registry.fetch_model(registry.connect(params, "a models:/ URI"), target, Path(tmp))
            found = sorted(folder.rglob("*.onnx"))
            if not found:
                raise KdpipeError(f"{target}: holds no .onnx file; probe an ONNX sibling (models:/<name>-onnx@...)")
            path = found[0]
        try:
            result = probe_file(
                path,
                images=images,
                threads=cfg.threads,
                repeats=cfg.repeats,
                warmup=cfg.warmup,
                batch_size=cfg.batch_size,
                probes=probes,
                device=device,
            )
        except ProbeError as exc:
            raise KdpipeError(str(exc)) from None
    if out is not None:
        write_json(out, result)
    return result


def attach(params: Params, result_file: Path, version: str | None = None) -> AttachRecord:
    """Put the probe result in ``result_file`` on the student version its file belongs to (or ``version``)."""
    result = read_json(result_file)
    meta, name = result.get("metadata", {}), params.tracking.registered_model
    version = version or meta.get(tags.REGISTERED_VERSION)
    if version is None:
        raise KdpipeError(
            f"{result_file}: the probed file belongs to no registered version (validate's files do not); probe the "
            f"registered one (kdpipe probe models:/{name}-onnx@champion) or name it with --version"
        )
    if meta.get(tags.REGISTERED_MODEL, name) != name:
        raise KdpipeError(
            f"{result_file}: the probed file belongs to {meta[tags.REGISTERED_MODEL]}, not {name} "
            "(tracking.registered_model)"
        )
    device = result["device"]["name"]
    figures = {**{k: result[k] for k in KEPT}, **result["figures"], "accuracy": result.get("accuracy")}
    tag = tags.device_probe(device)
    with tracking_errors(params, "attaching a probe"):
        mlflow_client = registry.connect(params, "attach-probe")
        if registry.get_version(mlflow_client, name, str(version)) is None:
            raise KdpipeError(f"registry: {name} has no version {version}")
        mlflow_client.set_model_version_tag(name, str(version), tag, json.dumps(figures, sort_keys=True))
    message = (
        f"{name} v{version}: {device}'s probe attached as {tag} ({result['format']}, p50 "
        f"{result['figures']['p50_ms']:.3f} ms over {result['figures']['probes']:.0f} probes)"
    )
    log.info("attach-probe: %s", message)
    return AttachRecord(str(version), tag, message)
