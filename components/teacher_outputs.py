"""Kubeflow component for kdpipe.steps.fill_teacher_cache: the teacher's outputs for the student's views."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def teacher_outputs(
    params_yaml: str,
    overrides: list[str],
    cache_dir: str,
    nodes: int,
    gpus_per_node: int,
    dataset: Input[Dataset],
    teacher: Input[Model],
    outputs: Output[Artifact],
) -> None:
    """Record the teacher's outputs for every view distill will train on, each of its nodes x gpus ranks' shard.

    On the data-cache PVC the cache outlives the run: a later night with the same teacher, data and
    view params finds every epoch and records nothing. Without a PVC the artifact holds the files.
    """
    from kdpipe import steps
    from kdpipe.infra.termination import stop_on_sigterm
    from kdpipe.kubeflow import launch
    from kdpipe.kubeflow.task import task_params

    params = task_params(params_yaml, overrides, cache_dir, "", dataset, teacher_outputs=outputs, teacher=teacher)
    with stop_on_sigterm(params.runtime.termination_grace_s):
        result = steps.fill_teacher_cache(params, max(1, nodes * gpus_per_node))  # 0 GPUs: one CPU rank
    launch.note_location(outputs.path, params.paths.teacher_cache)
    outputs.metadata.update(result)
