"""Kubeflow component for kdpipe.steps.distill: the student as a Model artifact."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def distill(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    num_processes: int,
    dataset: Input[Dataset],
    teacher: Input[Model],
    teacher_outputs: Input[Artifact],
    student: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Train the student, one process per GPU of the pod under torchrun; a retry resumes its checkpoint.

    Checkpoints go under cache_dir (a PVC) keyed by the run id, so a retried or preempted pod of the
    same run continues after its last completed epoch.
    """
    from kdpipe import steps
    from kdpipe.kubeflow import artifacts, dataref, launch
    from kdpipe.kubeflow.params import step_params

    params = step_params(
        params_yaml,
        overrides,
        run_id,
        prepared=dataref.local_dir(dataset.path, cache_dir),
        teacher=teacher.path,
        student=student.path,
        checkpoints=launch.scratch_dir(cache_dir, "checkpoints", run_id),
        teacher_cache=launch.teacher_cache_dir(cache_dir, teacher_outputs.path),
    )
    artifacts.log_scalars(metrics, launch.distill(params, num_processes, steps.distill))
    artifacts.describe_model(student, role="student")
