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
    """Measure the student beside its teacher; returns whether it passed (a plain bool: kfp.local resolves
    conditions only on the single output "Output"); the student's ONNX fp32 and int8 are Model outputs."""
    from kdpipe import steps
    from kdpipe.kubeflow import artifacts
    from kdpipe.kubeflow.task import task_params

    inputs = {"teacher": teacher, "student": student, "validation": validation}
    params = task_params(params_yaml, overrides, cache_dir, run_id, dataset, **inputs)
    result = steps.validate_student(params)
    return artifacts.record_validation(
        result, params, metrics, confusion, report, validation, dataset, student, (onnx_model, onnx_int8_model)
    )
