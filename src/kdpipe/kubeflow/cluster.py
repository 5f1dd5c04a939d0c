"""Where the GPU step lands on a Kubernetes cluster: one set of settings for the Kubeflow task
and for the PyTorchJob, so the two placements cannot drift apart."""

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATIONS = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}

# DataLoader-free training still needs a large /dev/shm: NCCL and torch.distributed use it.
SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
SHM_MEDIUM = "Memory"

# The data cache and checkpoints of a run, on a PersistentVolumeClaim when one is compiled in.
CACHE_VOLUME = "kdpipe-cache"
CACHE_PATH = "/mnt/kdpipe-cache"

# Keys of the Kubernetes secret, each exposed as the environment variable of the same name.
CREDENTIALS_SECRET = "kdpipe-credentials"
SECRET_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_S3_ENDPOINT_URL",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)


def secret_env(secret_name: str) -> list[dict[str, object]]:
    """The container env that reads each of :data:`SECRET_ENV` from the secret (each key optional)."""
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key, "optional": True}}}
        for key in SECRET_ENV
    ]
