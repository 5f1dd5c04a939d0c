"""The distill step as a Kubeflow Trainer v2 TrainJob (``trainer.kubeflow.org/v1alpha1``), for runs that outgrow
one node: Trainer v2 replaced the Training Operator's PyTorchJob (:mod:`kdpipe.kubeflow.pytorchjob`, kept for
clusters still on Training Operator 1.9).

The TrainJob names a runtime (``torch-distributed`` by default, a ClusterTrainingRuntime whose replicated job and
container are both ``node``), ``numNodes`` x ``numProcPerNode`` GPUs, and the image and command of the distill
step: torchrun over ``kdpipe distill --resume`` reading the rendezvous the runtime sets (``PET_*``). What the pods
need beyond that, the PVC and /dev/shm, the GPU nodes' tolerations and selector, the credentials, goes in a
``runtimePatches`` entry of kdpipe's (Trainer 2.3). The launcher's own task config, when KFP passes it through
(``dsl.TaskConfig``), supplies the resources, env, tolerations, node selector and volumes instead of kdpipe's
defaults. Every manifest is checked against the ``kubeflow-trainer-api`` models before it is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import PARAMS_FILE
from kdpipe.kubeflow import cluster
from kdpipe.kubeflow.cluster_job import JobKind
from kdpipe.kubeflow.image import IMAGE
from kdpipe.kubeflow.launch import torchrun_command
from kdpipe.tracking import tags

TRAINJOB = JobKind(
    "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob", "Complete", "jobset.sigs.k8s.io/jobset-name"
)
NODE = "node"  # the replicated job and container of the torch runtimes


def _defaults(gpus_per_node: int, accelerator_type: str, pvc_name: str, secret_name: str) -> dict[str, Any]:
    """kdpipe's own placement (:mod:`kdpipe.kubeflow.cluster`), used where no task config is passed through."""
    return {
        "resources": {"limits": {accelerator_type: gpus_per_node}},
        "env": cluster.secret_env(secret_name),
        "tolerations": [dict(t) for t in cluster.GPU_TOLERATIONS],
        "node_selector": dict(cluster.GPU_NODE_SELECTOR),
        "volumes": [{"name": cluster.CACHE_VOLUME, "persistentVolumeClaim": {"claimName": pvc_name}}],
        "volume_mounts": [{"name": cluster.CACHE_VOLUME, "mountPath": cluster.CACHE_PATH}],
    }


def manifest(
    name: str,
    labels: dict[str, str],
    work_dir: Path,
    *,
    nodes: int,
    gpus_per_node: int,
    runtime: str = "torch-distributed",
    deadline_s: int | None = None,
    grace_s: int = 30,
    accelerator_type: str = cluster.GPU_RESOURCE,
    pvc_name: str = cluster.CACHE_VOLUME,
    secret_name: str = cluster.CREDENTIALS_SECRET,
    task_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The TrainJob of one attempt (see the module docstring); ``task_config``: the launcher's passed-through
    ``dsl.TaskConfig`` fields, each replacing kdpipe's default where given."""
    if nodes < 1 or gpus_per_node < 1:
        raise KdpipeError(f"trainjob: nodes ({nodes}) and gpus_per_node ({gpus_per_node}) must be at least 1")
    given = {k: v for k, v in (task_config or {}).items() if v}
    placed = {**_defaults(gpus_per_node, accelerator_type, pvc_name, secret_name), **given}
    shm = {"name": cluster.SHM_VOLUME, "emptyDir": {"medium": cluster.SHM_MEDIUM}}
    shm_mount = {"name": cluster.SHM_VOLUME, "mountPath": cluster.SHM_PATH}
    has_shm = any(v.get("name") == cluster.SHM_VOLUME for v in placed["volumes"])  # the task's own, passed through
    pod = {
        "tolerations": placed["tolerations"],
        "nodeSelector": placed["node_selector"],
        "volumes": placed["volumes"] if has_shm else [*placed["volumes"], shm],
        "terminationGracePeriodSeconds": grace_s,
        "containers": [
            {
                "name": NODE,
                "volumeMounts": placed["volume_mounts"] if has_shm else [*placed["volume_mounts"], shm_mount],
            }
        ],
    }
    if placed.get("affinity"):
        pod["affinity"] = placed["affinity"]
    patch = {"replicatedJobs": [{"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}]}
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": TRAINJOB.group, "kind": "ClusterTrainingRuntime", "name": runtime},
        "trainer": {
            "numNodes": nodes,
            "numProcPerNode": gpus_per_node,
            "image": IMAGE,
            "command": torchrun_command(str(work_dir / PARAMS_FILE)),
            "env": placed["env"],
            "resourcesPerNode": placed["resources"],
        },
        "runtimePatches": [{"manager": tags.K8S_PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": patch}}}],
    }
    if deadline_s:
        spec["activeDeadlineSeconds"] = deadline_s
    job = {
        "apiVersion": f"{TRAINJOB.group}/{TRAINJOB.version}",
        "kind": TRAINJOB.kind,
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }
    check(job)
    return job


def check(job: dict[str, Any]) -> None:
    """The manifest read by the ``kubeflow-trainer-api`` models and written back: a wrong type is an error, and so
    is a key they do not know (it would not survive the round trip), before anything reaches the cluster."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
    from pydantic import ValidationError

    name = job["metadata"]["name"]
    try:
        back = TrainerV1alpha1TrainJob.from_dict(job).to_dict()
    except ValidationError as exc:
        raise KdpipeError(f"trainjob {name}: not a valid TrainJob: {exc.errors()[0]}") from None
    if back != job:
        raise KdpipeError(
            f"trainjob {name}: the TrainJob models do not read it back as written: {_first_difference(job, back)}"
        )


def _first_difference(sent: Any, read: Any, path: str = "") -> str:
    if isinstance(sent, dict) and isinstance(read, dict):
        for key in sent.keys() | read.keys():
            if sent.get(key) != read.get(key):
                return _first_difference(sent.get(key), read.get(key), f"{path}.{key}")
    if isinstance(sent, list) and isinstance(read, list) and len(sent) == len(read):
        for i, (a, b) in enumerate(zip(sent, read, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"{path.lstrip('.')}: sent {sent!r}, read {read!r}"
