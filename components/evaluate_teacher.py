"""Kubeflow component for kdpipe.steps.evaluate_teacher: the teacher as a Model artifact."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def evaluate_teacher(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    dataset: Input[Dataset],
    teacher: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Load (or, for the embedded demo, train) the teacher and measure it on the test split."""
    from kdpipe import steps
    from kdpipe.infra.termination import stop_on_sigterm
    from kdpipe.kubeflow import artifacts
    from kdpipe.kubeflow.task import task_params

    params = task_params(params_yaml, overrides, cache_dir, run_id, dataset, teacher=teacher, checkpoints=True)
    with stop_on_sigterm(params.runtime.termination_grace_s):
        artifacts.log_scalars(metrics, steps.evaluate_teacher(params))
    artifacts.describe_model(teacher, role="teacher")
