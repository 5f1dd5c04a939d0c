"""Kubeflow component for kdpipe.steps.evaluate_teacher: the teacher as a Model artifact."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
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
    from kdpipe.kubeflow import artifacts, dataref, launch
    from kdpipe.kubeflow.params import step_params

    params = step_params(
        params_yaml,
        overrides,
        run_id,
        prepared=dataref.local_dir(dataset.path, cache_dir),
        teacher=teacher.path,
        checkpoints=launch.scratch_dir(cache_dir, "checkpoints", run_id),
    )
    artifacts.log_scalars(metrics, steps.evaluate_teacher(params))
    artifacts.describe_model(teacher, role="teacher")
