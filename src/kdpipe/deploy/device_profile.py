"""``validate.device_profile``: the latency gate read on the target device, from a probe stored in the registry.

A line PC probes a registered student's ONNX file with ``kdpipe-probe`` and ``kdpipe registry attach-probe`` keeps
the result on that version (tag ``kdpipe.device_probe.<device>``). Tonight's candidate did not exist when the device
probed, so its latency there is estimated: the pod probes the very file the device probed (the same sha256, fetched
from the ONNX sibling), at ``export.threads`` and ``export.latency_probes`` like the candidate, and

    latency on the device = candidate's p50 on the pod x (reference p50 on the device / reference p50 on the pod).

The ratio carries the device's speed, its runtime and its thread count; it holds best for a candidate of the
reference's architecture and format (a different architecture may scale differently on another CPU), which is why
the format must match and the report names the reference. Memory stays the pod's figure.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdpipe_probe.cli import probe_file
from kdpipe_probe.runtimes import ProbeError

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import file_sha256
from kdpipe.promotion import siblings
from kdpipe.tracking import registry, tags
from kdpipe.tracking.server import tracking_errors

log = logging.getLogger("kdpipe")

# The device probes a registered ONNX sibling; the OpenVINO IR is not registered, so no pod can probe its file.
SIBLING_OF_FORMAT = {"onnx": "onnx", "onnx_int8": "onnx-int8"}


@dataclass(frozen=True)
class DeviceProfile:
    """The reference file's batch-1 p50 on the device (as attached) and on this pod (probed now), and which file."""

    source: str
    device: str
    format: str
    reference: str
    sha256: str
    device_p50_ms: float
    pod_p50_ms: float
    device_threads: int
    device_measured_at: str

    @property
    def ratio(self) -> float:
        """How many times slower the device runs the reference than this pod does (below 1: faster)."""
        return self.device_p50_ms / self.pod_p50_ms

    def on_device(self, pod_ms: float) -> float:
        """A latency measured on this pod, as estimated on the device."""
        return pod_ms * self.ratio

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _attached(mlflow_client: Any, source: str) -> tuple[Any, str, dict[str, Any]]:
    """(student version, device, the probe's figures) that ``models:/...#<device>`` names."""
    uri, device = source.rsplit("#", 1)
    mv = registry.resolve(mlflow_client, uri)
    found = mv.tags.get(tags.device_probe(device))
    if found is None:
        prefix = tags.DEVICE_PROBE_PREFIX
        probed = sorted(k.removeprefix(prefix) for k in mv.tags if k.startswith(prefix))
        raise KdpipeError(
            f"validate.device_profile: {mv.name} v{mv.version} ({uri}) holds no probe from {device!r} (tag "
            f"{tags.device_probe(device)}; probed by: {', '.join(probed) or 'no device'}). On the device: kdpipe-probe "
            f"the file of models:/{mv.name}-onnx@..., then kdpipe registry attach-probe RESULT.json"
        )
    return mv, device, json.loads(found)


def _reference_file(mlflow_client: Any, mv: Any, fmt: str, sha256: str, dst: Path) -> tuple[Path, str]:
    """The registered file the device probed, downloaded into ``dst`` and checked by its sha256; and its name."""
    sibling = siblings.sibling_name(mv.name, SIBLING_OF_FORMAT[fmt])
    export = siblings.of_student(mlflow_client, sibling, str(mv.version))
    if export is None:
        raise KdpipeError(f"validate.device_profile: {mv.name} v{mv.version} has no {sibling} version to probe here")
    folder, _ = registry.fetch_model(mlflow_client, f"models:/{sibling}/{export.version}", dst)
    found = [p for p in sorted(folder.rglob("*.onnx")) if file_sha256(p) == sha256]
    if not found:
        raise KdpipeError(
            f"validate.device_profile: the file the device probed (sha256 {sha256[:12]}) is not {sibling} "
            f"v{export.version}'s; probe the registered file (kdpipe-probe on models:/{sibling}/{export.version})"
        )
    return found[0], f"{mv.name} v{mv.version} ({sibling} v{export.version})"


def calibrate(params: Params, source: str) -> DeviceProfile:
    """Read the stored probe ``source`` (``validate.device_profile``) and probe its file on this pod, as the module
    docstring says."""
    deploy_format, cfg = params.validate_.deploy_format, params.export
    with tracking_errors(params, "validate.device_profile"), tempfile.TemporaryDirectory(prefix="kdpipe-ref-") as tmp:
        mlflow_client = registry.connect(params, "validate.device_profile")
        mv, device, attached = _attached(mlflow_client, source)
        fmt = attached["format"]
        if fmt != deploy_format:
            raise KdpipeError(
                f"validate.device_profile: {device}'s probe is of {fmt}, but validate.deploy_format is "
                f"{deploy_format}; a latency ratio holds between files of one format"
            )
        if fmt not in SIBLING_OF_FORMAT:
            raise KdpipeError(
                f"validate.device_profile: {fmt} files are not registered, so this pod cannot probe the file "
                f"{device} probed; use a probe of {' or '.join(SIBLING_OF_FORMAT)}"
            )
        path, reference = _reference_file(mlflow_client, mv, fmt, attached["sha256"], Path(tmp))
        try:
            pod = probe_file(
                path,
                threads=cfg.threads,
                repeats=cfg.repeats,
                warmup=cfg.warmup,
                batch_size=cfg.batch_size,
                probes=cfg.latency_probes,
            )
        except ProbeError as exc:
            raise KdpipeError(f"validate.device_profile: {exc}") from None
    profile = DeviceProfile(
        source,
        device,
        fmt,
        reference,
        attached["sha256"],
        float(attached["p50_ms"]),
        float(pod["figures"]["p50_ms"]),
        int(attached["threads"]),
        str(attached["measured_at"]),
    )
    log.info(
        "validate: %s runs %s %.2fx as long as this pod (%.3f ms against %.3f ms at batch 1)",
        device,
        reference,
        profile.ratio,
        profile.device_p50_ms,
        profile.pod_p50_ms,
    )
    return profile
