"""What validate deployed, as it crosses seams: :class:`Deployment`, and the files promote registers from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdpipe.deploy.device_profile import DeviceProfile
from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import METRICS_FILE, file_sha256, read_json
from kdpipe.tracking import tags


@dataclass(frozen=True)
class Deployment:
    """``cost[model][format]``: the probe's figures plus the top-1 on the gate split; ``parity[model]``: fp32
    against eager (``student_openvino``: the OpenVINO IR's); ``int8``: the student's ONNX int8 and fp32 top-1, the
    drop, whether int8 is offered and why not (``openvino_int8``: the same for OpenVINO, empty without it);
    ``not_measured[model][format]``: why a figure is missing from ``cost``; ``device_profile``: the target device
    the latency gate reads, when ``validate.device_profile`` names one."""

    files: dict[str, Path]
    parity: dict[str, dict[str, float]]
    int8: dict[str, Any]
    cost: dict[str, dict[str, dict[str, float]]]
    deploy_format: str
    threads: int
    batch_size: int
    not_measured: dict[str, dict[str, str]] = field(default_factory=dict)
    openvino_int8: dict[str, Any] = field(default_factory=dict)
    device_profile: DeviceProfile | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: what metrics.json, details.json and the Kubeflow Metrics artifact hold."""
        return {
            "deploy_format": self.deploy_format,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "parity": self.parity,
            "int8": self.int8,
            "cost": self.cost,
            **({"not_measured": self.not_measured} if self.not_measured else {}),  # absent: the files of before
            **({"openvino_int8": self.openvino_int8} if self.openvino_int8 else {}),
            **({"device_profile": self.device_profile.as_dict()} if self.device_profile else {}),
            "files": {name: path.name for name, path in self.files.items()},
            "sha256": {path.name: file_sha256(path) for path in self.files.values()},
        }

    def gate_figures(self) -> dict[str, Any]:
        """The student's latency and memory in the deploy format, what the thresholds read: the latency as estimated
        on the profiled device (``latency_on`` names it) when there is one."""
        figures, profile = self.cost["student"][self.deploy_format], self.device_profile
        if profile is None:
            return {"latency_ms_batch1": figures["p50_ms"], "memory_mb": figures["memory_mb"]}
        latency = profile.on_device(figures["p50_ms"])
        return {"latency_ms_batch1": latency, "memory_mb": figures["memory_mb"], "latency_on": profile.device}

    def deploy_refused(self) -> str:
        """Why the deploy format may not be deployed (an int8 over ``export.max_int8_drop``); empty when it may."""
        verdict = {"onnx_int8": self.int8, "openvino_int8": self.openvino_int8}.get(self.deploy_format)
        return "" if verdict is None or verdict["offered"] else verdict["reason"]


def registry_files(validation_dir: Path) -> dict[str, Path]:
    """The exported student files a registered version points at, by version tag: fp32 always, int8 only when
    validate offered it; none when validate exported nothing."""
    deployed = read_json(validation_dir / METRICS_FILE).get("deployment")
    if not deployed:
        return {}
    names = {
        tags.ONNX_MODEL_URI: "student_onnx",
        **({tags.ONNX_INT8_MODEL_URI: "student_int8_onnx"} if deployed["int8"]["offered"] else {}),
    }
    found = {tag: validation_dir / deployed["files"][name] for tag, name in names.items()}
    for path in found.values():
        if not path.exists() or file_sha256(path) != deployed["sha256"][path.name]:
            raise KdpipeError(
                f"{path}: missing or changed since validate measured it (a `kdpipe export` since?); "
                "rerun `kdpipe validate` before promoting"
            )
    return found
