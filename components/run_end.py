"""Kubeflow component for kdpipe.kubeflow.run_end: the pipeline's exit handler."""

from kfp.dsl import PipelineTaskFinalStatus, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def run_end(
    params_yaml: str, overrides: list[str], cache_dir: str, run_id: str, status: PipelineTaskFinalStatus
) -> None:
    """Runs after every task, failed or not: a signed notice when one failed, and the PVC's scratch tidied."""
    import os

    from kdpipe.kubeflow import run_end as end
    from kdpipe.kubeflow.params import step_params

    params = step_params(params_yaml, overrides, run_id)
    job, task, error = status.pipeline_job_resource_name, status.pipeline_task_name, status.error_message or ""
    end.finish(params, cache_dir, status.state, job, task, error, os.environ.get(end.SECRET_ENV, ""))
