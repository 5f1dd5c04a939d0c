"""Kubeflow component for kdpipe.steps.promote: the promotion record of a validated student."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    dataset: Input[Dataset],
    teacher: Input[Model],
    student: Input[Model],
    validation: Input[Artifact],
    promotion: Output[Artifact],
) -> bool:
    """Promote the student when the promotion rule allows it; returns whether it did, the record says why."""
    from kdpipe import steps
    from kdpipe.kubeflow import artifacts, dataref
    from kdpipe.kubeflow.params import step_params

    params = step_params(
        params_yaml,
        overrides,
        run_id,
        prepared=dataref.local_dir(dataset.path, cache_dir),
        teacher=teacher.path,
        student=student.path,
        validation=validation.path,
        promotion=promotion.path,
    )
    return artifacts.record_promotion(steps.promote(params), promotion)
