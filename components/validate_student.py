"""Kubeflow component for kdpipe.steps.validate_student: metrics, confusion matrix, report, verdict."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
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
    """Measure the student beside its teacher; returns whether it passed, which gates promote; the
    student's ONNX fp32 and int8 exports are Model outputs.

    A plain ``bool`` (kfp's single output "Output"): kfp.local resolves conditions only on that name.
    """
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
    )
    result = steps.validate_student(params)
    return artifacts.record_validation(
        result, params, metrics, confusion, report, validation, dataset, student, (onnx_model, onnx_int8_model)
    )
