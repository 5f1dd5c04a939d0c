"""Kubeflow component for kdpipe.study.fanout.teacher_outputs: a study teacher's outputs, once per set of views."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
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
    every cell of it replays them instead of running the teacher again. On the data-cache PVC they outlive the run;
    without one the artifact holds them."""
    from pathlib import Path

    from kdpipe.kubeflow import dataref, launch
    from kdpipe.kubeflow.params import step_params
    from kdpipe.study import fanout
    from kdpipe.study.plan import Plan

    base = step_params(
        params_yaml,
        overrides,
        prepared=dataref.local_dir(dataset.path, cache_dir),
        teacher=teacher.path,
        teacher_cache=launch.teacher_cache_dir(cache_dir, outputs.path),
    )
    work = Path(launch.scratch_dir(cache_dir, "study", run_id, "teacher-outputs", role))
    outputs.metadata.update(fanout.teacher_outputs(base, Plan.from_dict(plan), role, work))
    launch.note_location(outputs.path, base.paths.teacher_cache)
