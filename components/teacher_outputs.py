"""Kubeflow component for kdpipe.steps.fill_teacher_cache: the teacher's outputs for the student's views."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
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
    from kdpipe.kubeflow import dataref, launch
    from kdpipe.kubeflow.params import step_params

    params = step_params(
        params_yaml,
        overrides,
        prepared=dataref.local_dir(dataset.path, cache_dir),
        teacher=teacher.path,
        teacher_cache=launch.teacher_cache_dir(cache_dir, outputs.path),
    )
    result = steps.fill_teacher_cache(params, max(1, nodes * gpus_per_node))  # 0 GPUs: one CPU rank
    launch.note_location(outputs.path, params.paths.teacher_cache)
    outputs.metadata.update(result)
