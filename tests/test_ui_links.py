"""Every MLflow UI link opens the model-training view; Kubeflow runs are linked when their UI is known."""

from __future__ import annotations

from collections.abc import Callable

from kdpipe.config import Params
from kdpipe.tracking import tags, ui_links


def test_links_open_the_training_view_of_the_server_or_of_a_local_mlflow_ui(make_params: Callable[..., Params]) -> None:
    local = make_params()  # a sqlite store: `mlflow ui` serves it on 127.0.0.1:5000
    assert ui_links.experiment(local, "3") == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    served = make_params(**{"tracking.uri": "http://mlflow.example:5000/"})
    assert ui_links.run(served, "3", "abc") == (
        "http://mlflow.example:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    chosen = make_params(**{"tracking.ui_url": "https://mlflow.example.org"})
    assert ui_links.model_version(chosen, "my student", "7") == (
        "https://mlflow.example.org/#/models/my%20student/versions/7?workflowType=machine_learning"
    )


def test_a_kubeflow_run_is_tagged_and_linked_only_when_its_ui_is_known(make_params: Callable[..., Params]) -> None:
    assert ui_links.kubeflow_run(make_params()) == {}
    run = make_params(**{"tracking.kubeflow_run_id": "r-42"})
    assert ui_links.kubeflow_run(run) == {tags.KUBEFLOW_RUN_ID: "r-42"}
    linked = make_params(
        **{"tracking.kubeflow_run_id": "r-42", "tracking.kubeflow_ui_url": "https://kf.example/pipeline/"}
    )
    assert ui_links.kubeflow_run(linked) == {
        tags.KUBEFLOW_RUN_ID: "r-42",
        tags.KUBEFLOW_RUN_URL: "https://kf.example/pipeline/#/runs/details/r-42",
    }
