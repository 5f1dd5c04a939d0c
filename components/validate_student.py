"""Kubeflow component for kdpipe.steps.validate_student: metrics, confusion matrix, report, verdict."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def validate_student(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    dataset: Input[Dataset],
    teacher: Input[Model],
    student: Input[Model],
    validation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
    onnx_model: Output[Model],
    onnx_int8_model: Output[Model],
) -> bool:
    """Measure the student beside its teacher; returns whether it passed, as kfp.local's conditions need it."""
    from kdpipe import steps
    from kdpipe.infra.termination import stop_on_sigterm
    from kdpipe.kubeflow import artifacts
    from kdpipe.kubeflow.task import task_params

    inputs = {"teacher": teacher, "student": student, "validation": validation}
    params = task_params(params_yaml, overrides, cache_dir, run_id, dataset, **inputs)
    onnx = (onnx_model, onnx_int8_model)
    with stop_on_sigterm(params.runtime.termination_grace_s):
        result = steps.validate_student(params)
    return artifacts.record_validation(result, params, metrics, confusion, report, validation, dataset, student, onnx)
