"""Kubeflow component for kdpipe.study.fanout.teacher: one role's teacher of the study, measured."""

from kfp.dsl import Dataset, Input, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def study_teacher(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    plan: dict,
    role: str,
    dataset: Input[Dataset],
    teacher: Output[Model],
) -> str:
    """Load or train the teacher of ``role`` (main: params.yaml's; small, large: the capacity gap's) and measure
    it on val, test and the corruption suite; returns its record as JSON for the report step."""
    from kdpipe.kubeflow import artifacts
    from kdpipe.kubeflow.task import task_params
    from kdpipe.study import pods

    base = task_params(params_yaml, overrides, cache_dir, run_id, dataset, teacher=teacher)
    record = pods.teacher(base, plan, role, cache_dir, run_id)
    artifacts.describe_model(teacher, role="teacher", study_role=role)
    return record
