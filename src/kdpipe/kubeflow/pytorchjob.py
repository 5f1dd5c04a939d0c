"""The distill step as a Kubeflow Training Operator PyTorchJob, for runs that outgrow one node.

The pipeline's launcher task stages the data set and the teacher on a shared PVC, creates a
PyTorchJob whose pods (one per node, ``nproc_per_node`` processes each) run torchrun over
``kdpipe distill`` from the PVC, waits for it, and copies the student back into its Model artifact.
torchrun reads the rendezvous the operator sets (``PET_*`` variables); kdpipe adds no launcher.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import METRICS_FILE, PARAMS_FILE, atomic_write_text, read_json
from kdpipe.kubeflow import cluster
from kdpipe.kubeflow.image import IMAGE
from kdpipe.kubeflow.launch import scratch_dir, torchrun_command
from kdpipe.kubeflow.params import dump_params, with_paths

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Cluster:
    """Where the job's pods run: ``nodes`` pods of ``gpus_per_node`` GPUs (``accelerator_type``), sharing the
    PVC ``pvc_name`` and reading S3 credentials from the secret ``secret_name``."""

    nodes: int
    gpus_per_node: int
    accelerator_type: str = cluster.GPU_RESOURCE
    pvc_name: str = cluster.CACHE_VOLUME
    secret_name: str = cluster.CREDENTIALS_SECRET


def stage(params: Params, work_dir: Path) -> Params:
    """Copy the data set and the teacher under ``work_dir`` (the shared PVC) and point params there."""
    paths = {name: str(work_dir / name) for name in ("prepared", "teacher", "student", "checkpoints")}
    for name in ("prepared", "teacher"):
        shutil.copytree(getattr(params.paths, name), paths[name], dirs_exist_ok=True)
    staged = with_paths(params, **paths)
    atomic_write_text(work_dir / PARAMS_FILE, dump_params(staged))
    return staged


def manifest(
    name: str,
    work_dir: Path,
    *,
    nodes: int,
    gpus_per_node: int,
    accelerator_type: str = cluster.GPU_RESOURCE,
    pvc_name: str = cluster.CACHE_VOLUME,
    secret_name: str = cluster.CREDENTIALS_SECRET,
) -> dict[str, Any]:
    """A PyTorchJob: one Master and ``nodes - 1`` Workers, each a pod with ``gpus_per_node`` GPUs."""
    if nodes < 1 or gpus_per_node < 1:
        raise KdpipeError(f"pytorchjob: nodes ({nodes}) and gpus_per_node ({gpus_per_node}) must be at least 1")
    container = {
        "name": "pytorch",
        "image": IMAGE,
        "command": torchrun_command(str(work_dir / PARAMS_FILE)),
        "resources": {"limits": {accelerator_type: gpus_per_node}},
        "env": [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key, "optional": True}}}
            for key in cluster.SECRET_ENV
        ],
        "volumeMounts": [
            {"name": cluster.CACHE_VOLUME, "mountPath": cluster.CACHE_PATH},
            {"name": cluster.SHM_VOLUME, "mountPath": cluster.SHM_PATH},
        ],
    }
    pod = {
        "spec": {
            "containers": [container],
            "tolerations": [dict(t) for t in cluster.GPU_TOLERATIONS],
            "nodeSelector": dict(cluster.GPU_NODE_SELECTOR),
            "volumes": [
                {"name": cluster.CACHE_VOLUME, "persistentVolumeClaim": {"claimName": pvc_name}},
                {"name": cluster.SHM_VOLUME, "emptyDir": {"medium": cluster.SHM_MEDIUM}},
            ],
        }
    }
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": pod}}
    if nodes > 1:
        replicas["Worker"] = {"replicas": nodes - 1, "restartPolicy": "OnFailure", "template": pod}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "kdpipe"}},
        "spec": {"nprocPerNode": str(gpus_per_node), "pytorchReplicaSpecs": replicas},
    }


def job_state(job: dict[str, Any]) -> str | None:
    """'Succeeded' or 'Failed' once the operator says so, else None."""
    for condition in job.get("status", {}).get("conditions", []):
        if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def run(job: dict[str, Any], poll_seconds: float = 30.0) -> None:
    """Create the PyTorchJob in this pod's namespace and wait for it to finish."""
    from kubernetes import client, config

    config.load_incluster_config()
    api = client.CustomObjectsApi()
    namespace = NAMESPACE_FILE.read_text().strip()
    name = job["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
    except client.ApiException as exc:
        if exc.status != 409:  # a retried launcher finds its job already there and waits for it
            raise
    while (state := job_state(api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))) is None:
        time.sleep(poll_seconds)
    if state == "Failed":
        raise KdpipeError(
            f"PyTorchJob {namespace}/{name} failed; see `kubectl logs -l training.kubeflow.org/job-name={name}`"
        )


def distill(params: Params, cache_dir: str, run_id: str, student_dir: str, where: Cluster) -> dict[str, Any]:
    """Stage the inputs on the shared PVC (under ``cache_dir``, keyed by ``run_id``), run the PyTorchJob to
    completion, and copy the student into ``student_dir``; returns the distill step's summary."""
    work_dir = scratch_dir(cache_dir, "runs", run_id)
    staged = stage(params, Path(work_dir))
    run(manifest(f"kdpipe-distill-{run_id}"[:63], Path(work_dir), **asdict(where)))
    shutil.copytree(staged.paths.student, student_dir, dirs_exist_ok=True)
    return read_json(Path(student_dir) / METRICS_FILE)
