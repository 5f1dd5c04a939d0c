"""The distill step as a Training Operator PyTorchJob (``kubeflow.org/v1``): the path for clusters still on
Training Operator 1.9 (``--training-api pytorchjob``); Kubeflow Trainer v2's TrainJob
(:mod:`kdpipe.kubeflow.trainjob`) replaced it.

The job's pods (one per node, ``nproc_per_node`` processes each) run torchrun over ``kdpipe distill --resume``
from the shared PVC; torchrun reads the rendezvous the operator sets (``PET_*`` variables). Staging, the
attempts, the wait and the clean-up are :mod:`kdpipe.kubeflow.multinode`'s and :mod:`kdpipe.kubeflow.cluster_job`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import PARAMS_FILE
from kdpipe.kubeflow import cluster
from kdpipe.kubeflow.cluster_job import SUCCEEDED, JobKind
from kdpipe.kubeflow.image import IMAGE
from kdpipe.kubeflow.launch import torchrun_command

PYTORCHJOB = JobKind("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob", SUCCEEDED, "training.kubeflow.org/job-name")


def manifest(
    name: str,
    labels: dict[str, str],
    work_dir: Path,
    *,
    nodes: int,
    gpus_per_node: int,
    deadline_s: int | None = None,
    accelerator_type: str = cluster.GPU_RESOURCE,
    pvc_name: str = cluster.CACHE_VOLUME,
    secret_name: str = cluster.CREDENTIALS_SECRET,
) -> dict[str, Any]:
    """A PyTorchJob: one Master and ``nodes - 1`` Workers, each a pod with ``gpus_per_node`` GPUs; its run policy
    ends it after ``deadline_s`` seconds."""
    if nodes < 1 or gpus_per_node < 1:
        raise KdpipeError(f"pytorchjob: nodes ({nodes}) and gpus_per_node ({gpus_per_node}) must be at least 1")
    container = {
        "name": "pytorch",
        "image": IMAGE,
        "command": torchrun_command(str(work_dir / PARAMS_FILE)),
        "resources": {"limits": {accelerator_type: gpus_per_node}},
        "env": cluster.secret_env(secret_name),
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
    spec: dict[str, Any] = {"nprocPerNode": str(gpus_per_node), "pytorchReplicaSpecs": replicas}
    if deadline_s:
        spec["runPolicy"] = {"activeDeadlineSeconds": deadline_s}
    return {
        "apiVersion": f"{PYTORCHJOB.group}/{PYTORCHJOB.version}",
        "kind": PYTORCHJOB.kind,
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }
