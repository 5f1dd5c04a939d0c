"""Kubeflow component for kdpipe.steps.distill across several nodes: a Trainer v2 TrainJob (or a PyTorchJob)."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output, TaskConfig, component

from kdpipe.kubeflow.image import IMAGE
from kdpipe.kubeflow.passthrough import TO_THE_JOB


@component(base_image=IMAGE, install_kfp_package=False, task_config_passthroughs=TO_THE_JOB)
def distill_multinode(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    nodes: int,
    gpus_per_node: int,
    training_api: str,
    accelerator_type: str,
    pvc_name: str,
    credentials_secret: str,
    dataset: Input[Dataset],
    teacher: Input[Model],
    cached: Input[Artifact],
    student: Output[Model],
    metrics: Output[Metrics],
    task_config: TaskConfig,
) -> None:
    """Stage inputs on the PVC, run the job (a retry collects or replaces it), collect the student."""
    from kdpipe.kubeflow import artifacts, multinode
    from kdpipe.kubeflow.task import task_params

    params = task_params(params_yaml, overrides, cache_dir, run_id, dataset, teacher=teacher, teacher_outputs=cached)
    where = (nodes, gpus_per_node, training_api, accelerator_type, pvc_name, credentials_secret, task_config)
    artifacts.log_scalars(metrics, multinode.distill(params, cache_dir, run_id, student.path, where))
    artifacts.describe_model(student, role="student", trained_on=f"{nodes} x {gpus_per_node} x {accelerator_type}")
