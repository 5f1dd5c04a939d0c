"""Kubeflow component for kdpipe.steps.prepare_data: the data set as a Dataset artifact."""

from kfp.dsl import Dataset, Metrics, Output, component

from kdpipe.kubeflow.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def prepare_data(
    params_yaml: str,
    overrides: list[str],
    data_ref: str,
    cache_dir: str,
    run_id: str,
    dataset: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """Prepare the data set with its manifest; with a data_ref it stays there and the artifact names it."""
    from kdpipe import steps
    from kdpipe.infra.termination import stop_on_sigterm
    from kdpipe.kubeflow import artifacts, dataref
    from kdpipe.kubeflow.params import step_params

    params = step_params(params_yaml, overrides, run_id)
    with stop_on_sigterm(params.runtime.termination_grace_s):
        manifest = dataref.prepare(params, data_ref, cache_dir, dataset, steps.prepare_data)
    artifacts.log_scalars(metrics, {f"{split}_size": n for split, n in manifest["splits"].items()})
