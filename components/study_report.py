"""Kubeflow component for kdpipe.study.fanout.publish: the study's report from every run's result."""

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from kdpipe.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def study_report(
    params_yaml: str,
    overrides: list[str],
    run_id: str,
    plan: dict,
    command: str,
    main_teacher: str,
    small_teacher: str,
    large_teacher: str,
    main_runs: list[str],
    small_runs: list[str],
    large_runs: list[str],
    study: Output[Artifact],
    report: Output[Markdown],
) -> None:
    """Write the table, plot, results JSON and CSV (the `study` artifact, the table also as Markdown for the UI)
    and, with tracking on, the MLflow parent run with a child per cell and a grandchild per seed."""
    import json
    import shutil
    from pathlib import Path

    from kdpipe.kubeflow.params import step_params
    from kdpipe.study import fanout
    from kdpipe.study.plan import Plan

    published = fanout.publish(
        step_params(params_yaml, overrides, run_id),
        Plan.from_dict(plan),
        fanout.study_id(run_id),
        [json.loads(r) for r in [*main_runs, *small_runs, *large_runs]],
        [json.loads(t) for t in (main_teacher, small_teacher, large_teacher) if t],  # "": none
        Path(study.path),
        command,
    )
    shutil.copyfile(published["files"]["report"], report.path)
    study.metadata.update({"study_id": published["study_id"], **published.get("mlflow", {})})
