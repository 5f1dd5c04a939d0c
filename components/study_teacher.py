"""Kubeflow component for kdpipe.study.fanout.teacher: one role's teacher of the study, measured."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
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
    import json
    from pathlib import Path

    from kdpipe.kubeflow import artifacts, dataref, launch
    from kdpipe.kubeflow.params import step_params
    from kdpipe.study import fanout
    from kdpipe.study.plan import Plan

    base = step_params(
        params_yaml, overrides, run_id, prepared=dataref.local_dir(dataset.path, cache_dir), teacher=teacher.path
    )
    work = Path(launch.scratch_dir(cache_dir, "study", run_id, "teachers", role))
    record = fanout.teacher(base, Plan.from_dict(plan), role, work)
    artifacts.describe_model(teacher, role="teacher", study_role=role)
    return json.dumps(record)
