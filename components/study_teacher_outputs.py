"""Kubeflow component for kdpipe.study.fanout.teacher_outputs: a study teacher's outputs, once per set of views."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def study_teacher_outputs(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    run_id: str,
    plan: dict,
    role: str,
    dataset: Input[Dataset],
    teacher: Input[Model],
    outputs: Output[Artifact],
) -> None:
    """Record the teacher's outputs once per (transfer set, seed), and per size in the data-budget phase, so that
    every cell replays them instead of running the teacher again; on the data-cache PVC they outlive the run."""
    from kdpipe.kubeflow.task import task_params
    from kdpipe.study import pods

    base = task_params(params_yaml, overrides, cache_dir, "", dataset, teacher_outputs=outputs, teacher=teacher)
    outputs.metadata.update(pods.teacher_outputs(base, plan, role, cache_dir, run_id, outputs.path))
