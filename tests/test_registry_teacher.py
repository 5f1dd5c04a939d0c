"""A teacher taken from the MLflow registry (``models:/<name>@<alias>``, ``models:/<name>/<version>``),
against the real ``mlflow server`` whose artifacts live on SeaweedFS."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.infra.errors import KdpipeError, TeacherMismatchError
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, load_model, save_model
from kdpipe.teacher import source as teacher
from kdpipe.tracking import registry
from kdpipe.tracking.logged_models import log_classifier


def register_teacher(uri: str, name: str, classes: list[str], manifest: dict[str, Any], work: Path) -> str:
    """Log a kdpipe classifier as MLflow does for students, register it, alias it 'prod'."""
    import mlflow

    torch.manual_seed(1)
    net = create_model("cnn16", len(classes), 1).eval()
    ckpt = work / name / MODEL_FILE
    save_model(ckpt, net, "cnn16", classes, 1)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("teachers")
    with mlflow.start_run() as run:
        logged = log_classifier(net, ckpt, {**manifest, "classes": classes}, tracking_uri=uri)
    client = registry.client(uri)
    mv = registry.register_version(client, name, logged["model_uri"], run.info.run_id, {})
    client.set_registered_model_alias(name, "prod", mv.version)
    return str(mv.version)


def test_teacher_from_the_registry_by_alias_or_version(
    make_params: Callable[..., Params], mlflow_server: str, tmp_path: Path
) -> None:
    name = f"teacher-{uuid.uuid4().hex[:8]}"
    base = make_params(tracking__uri=mlflow_server, tracking__experiment=f"registry-teacher-{name}")
    steps.prepare_data(base)
    data = load_prepared(base.paths.prepared)
    version = register_teacher(mlflow_server, name, data.classes, data.manifest, tmp_path)

    for source in (f"models:/{name}@prod", f"models:/{name}/{version}"):
        params = make_params(
            tracking__uri=mlflow_server, tracking__experiment=base.tracking.experiment, teacher__source=source
        )
        metrics = steps.evaluate_teacher(params)
        assert metrics["num_samples"] == len(data.split("test")[1])
        meta = load_model(Path(params.paths.teacher) / MODEL_FILE)[1]
        assert meta["classes"] == data.classes
        assert (meta["meta"]["source"], meta["meta"]["version"]) == (source, f"{name}/{version}")
        assert teacher.lineage(params)["kdpipe.teacher_version"] == f"{name}/{version}"

    summary = steps.distill(params)  # the registry teacher distils like any other
    assert summary["epochs"] == 1


def test_registry_teacher_with_other_classes_is_refused_before_training(
    make_params: Callable[..., Params], mlflow_server: str, tmp_path: Path
) -> None:
    import mlflow

    name = f"teacher-{uuid.uuid4().hex[:8]}"
    params = make_params(
        tracking__uri=mlflow_server,
        tracking__experiment=f"registry-teacher-{name}",
        teacher__source=f"models:/{name}@prod",
    )
    steps.prepare_data(params)
    data = load_prepared(params.paths.prepared)
    register_teacher(mlflow_server, name, [f"other{i}" for i in range(5)], data.manifest, tmp_path)
    with pytest.raises(
        TeacherMismatchError, match=f"teacher.source models:/{name}@prod: the teacher predicts 5 classes"
    ):
        steps.evaluate_teacher(params)
    assert not (Path(params.paths.teacher) / MODEL_FILE).exists()
    assert not Path(params.paths.checkpoints).exists()
    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(params.tracking.experiment)
    (failed,) = client.search_runs([exp.experiment_id], "tags.`kdpipe.step` = 'evaluate_teacher'")
    assert failed.info.status == "FAILED" and "TeacherMismatchError" in failed.data.tags["kdpipe.error"]


@pytest.mark.parametrize("uri", ["models:/x", "models:/x/latest", "models:/@prod", "runs:/abc/model"])
def test_malformed_models_uri_is_a_clear_error(uri: str) -> None:
    with pytest.raises(KdpipeError, match="expected models:/<name>@<alias> or models:/<name>/<version>"):
        registry.parse_models_uri(uri)
