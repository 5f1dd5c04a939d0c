"""Kubeflow component for kdpipe.steps.distill across several nodes, as a Training Operator PyTorchJob."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def distill_pytorchjob(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    nodes: int,
    gpus_per_node: int,
    accelerator_type: str,
    pvc_name: str,
    credentials_secret: str,
    dataset: Input[Dataset],
    teacher: Input[Model],
    teacher_outputs: Input[Artifact],
    student: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Stage inputs on the shared PVC, run the PyTorchJob to completion, collect the student."""
    from kdpipe.kubeflow import artifacts, pytorchjob
    from kdpipe.kubeflow.task import task_params

    params = task_params(
        params_yaml, overrides, cache_dir, run_id, dataset, teacher_outputs=teacher_outputs, teacher=teacher
    )
    where = pytorchjob.Cluster(nodes, gpus_per_node, accelerator_type, pvc_name, credentials_secret)
    artifacts.log_scalars(metrics, pytorchjob.distill(params, cache_dir, run_id, student.path, where))
    artifacts.describe_model(student, role="student")
