"""Kubeflow component for kdpipe.study.fanout.one_run: one cell of the study under one seed."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
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
    """Train ``run``'s cell under its seeds (replaying the teacher's outputs), measure it; returns the result as JSON.

    Checkpoints go under cache_dir (a PVC) keyed by the run, the cell and the seed: a retried pod resumes.
    """
    import json
    from pathlib import Path

    from kdpipe.kubeflow import artifacts, dataref, launch
    from kdpipe.kubeflow.params import step_params
    from kdpipe.study import fanout
    from kdpipe.study.plan import Plan

    base = step_params(
        params_yaml,
        overrides,
        prepared=dataref.local_dir(dataset.path, cache_dir),
        teacher=teacher.path,
        student=student.path,
        teacher_cache=launch.teacher_cache_dir(cache_dir, teacher_outputs.path),
    )
    work = Path(launch.scratch_dir(cache_dir, "study", run_id, "runs"))
    result = fanout.one_run(base, Plan.from_dict(plan), run, work)
    artifacts.describe_model(
        student, role="student", study_cell=result["cell"], seed=result["seed"], data_seed=result["data_seed"]
    )
    return json.dumps(result)
