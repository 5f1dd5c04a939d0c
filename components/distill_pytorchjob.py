"""Kubeflow component for kdpipe.steps.distill across several nodes, as a Training Operator PyTorchJob."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
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
    from kdpipe.kubeflow import artifacts, dataref, launch, pytorchjob
    from kdpipe.kubeflow.params import step_params

    params = step_params(
        params_yaml,
        overrides,
        run_id,
        prepared=dataref.local_dir(dataset.path, cache_dir),
        teacher=teacher.path,
        teacher_cache=launch.teacher_cache_dir(cache_dir, teacher_outputs.path),
    )
    summary = pytorchjob.distill(
        params,
        launch.scratch_dir(cache_dir, "runs", run_id),
        f"kdpipe-distill-{run_id}",
        student.path,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        accelerator_type=accelerator_type,
        pvc_name=pvc_name,
        secret_name=credentials_secret,
    )
    artifacts.log_scalars(metrics, summary)
    artifacts.describe_model(student, role="student")
