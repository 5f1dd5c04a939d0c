"""Kubeflow component for kdpipe.study.fanout.one_run: one cell of the study under one seed."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def study_run(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    plan: dict,
    run: dict,
    dataset: Input[Dataset],
    teacher: Input[Model],
    teacher_outputs: Input[Artifact],
    student: Output[Model],
) -> str:
    """Train ``run``'s cell under its seed, replaying the teacher's outputs, and measure it; returns the result as
    JSON. Checkpoints go under cache_dir (a PVC) keyed by the run, the cell and the seed: a retried pod resumes."""
    import json

    from kdpipe.kubeflow import artifacts
    from kdpipe.kubeflow.task import task_params
    from kdpipe.study import pods

    inputs = {"teacher_outputs": teacher_outputs, "teacher": teacher, "student": student}
    result = pods.one_run(
        task_params(params_yaml, overrides, cache_dir, "", dataset, **inputs), plan, run, cache_dir, run_id
    )
    tags = {"study_cell": result["cell"], "seed": result["seed"], "data_seed": result["data_seed"]}
    artifacts.describe_model(student, role="student", **tags)
    return json.dumps(result)
