"""Kubeflow component for kdpipe.steps.distill: the student as a Model artifact."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def distill(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    num_processes: int,
    accelerator_type: str,
    dataset: Input[Dataset],
    teacher: Input[Model],
    teacher_outputs: Input[Artifact],
    student: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Train the student, one process per GPU of the pod under torchrun. Checkpoints go under cache_dir (a PVC)
    keyed by the run id, so a retried or preempted pod of the same run resumes after its last completed epoch."""
    from kdpipe import steps
    from kdpipe.infra.termination import stop_on_sigterm
    from kdpipe.kubeflow import artifacts, launch
    from kdpipe.kubeflow.task import task_params

    inputs = {"teacher_outputs": teacher_outputs, "teacher": teacher, "student": student}
    params = task_params(params_yaml, overrides, cache_dir, run_id, dataset, checkpoints=True, **inputs)
    with stop_on_sigterm(params.runtime.termination_grace_s):
        artifacts.log_scalars(metrics, launch.distill(params, num_processes, steps.distill))
    artifacts.describe_model(student, role="student", trained_on=f"{num_processes} x {accelerator_type}")
