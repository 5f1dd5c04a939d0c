"""Kubeflow component for kdpipe.steps.promote: the promotion record of a validated student."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
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
    from kdpipe.infra.termination import stop_on_sigterm
    from kdpipe.kubeflow import artifacts
    from kdpipe.kubeflow.task import task_params

    inputs = {"teacher": teacher, "student": student, "validation": validation, "promotion": promotion}
    params = task_params(params_yaml, overrides, cache_dir, run_id, dataset, **inputs)
    with stop_on_sigterm(params.runtime.termination_grace_s):
        record = steps.promote(params)
    return artifacts.record_promotion(record, promotion)
