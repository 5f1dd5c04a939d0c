"""Kubeflow component for kdpipe.study.fanout.publish: the study's report from every run's result."""

from kfp.dsl import Artifact, Markdown, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
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
    from kdpipe.kubeflow.params import step_params
    from kdpipe.study import pods

    base = step_params(params_yaml, overrides, run_id)
    teachers, runs = [main_teacher, small_teacher, large_teacher], [*main_runs, *small_runs, *large_runs]
    out = {"study_dir": study.path, "report_copy": report.path, "command": command}
    study.metadata.update(pods.report(base, plan, run_id, teachers, runs, **out))
