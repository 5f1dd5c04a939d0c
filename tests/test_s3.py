"""S3 storage through a real S3-compatible server (SeaweedFS on loopback): DVC push/pull of the prepared
data and the models, MLflow artifacts on S3 (proxied by the tracking server, or written directly by
the client), clear errors for wrong credentials, and no secret in anything MLflow keeps."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, save_model
from servers import S3Store

DVC = str(Path(sys.executable).parent / "dvc")
KDPIPE = str(Path(sys.executable).parent / "kdpipe")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dvc(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DVC, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def dvc_repo_with_outputs(make_params: Callable[..., Params], tmp_path: Path, store: S3Store) -> tuple[Path, str]:
    """A DVC repository holding a prepared data set and a student, with an S3 remote on SeaweedFS."""
    params = make_params(tracking__enabled=False)
    steps.prepare_data(params)
    data = load_prepared(params.paths.prepared)
    save_model(
        Path(params.paths.student) / MODEL_FILE,
        create_model("cnn8", data.num_classes, data.in_channels),
        "cnn8",
        data.classes,
        data.in_channels,
        data_sha256=data.sha256,
    )
    prefix = f"kdpipe-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for args in (
        ("init", "--no-scm", "-q"),
        ("remote", "add", "-d", "storage", f"s3://dvc/{prefix}"),
        ("remote", "modify", "storage", "endpointurl", store.endpoint),
        ("add", "-q", "prepared", f"student/{MODEL_FILE}"),
    ):
        done = dvc(tmp_path, *args, env=env)
        assert done.returncode == 0, done.stderr
    return tmp_path, prefix


def test_dvc_pushes_and_pulls_data_and_models_through_seaweedfs(
    make_params: Callable[..., Params], tmp_path: Path, seaweedfs: S3Store
) -> None:
    repo, prefix = dvc_repo_with_outputs(make_params, tmp_path, seaweedfs)
    before = {"data": load_prepared(repo / "prepared").sha256, "model": sha256(repo / "student" / MODEL_FILE)}
    env = {**os.environ, **seaweedfs.env(), "DVC_NO_ANALYTICS": "1"}
    pushed = dvc(repo, "push", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert len(seaweedfs.objects("dvc", prefix)) >= 3  # splits, manifest, model

    for path in ("prepared", f"student/{MODEL_FILE}", ".dvc/cache"):
        subprocess.run(["rm", "-rf", str(repo / path)], check=True)
    pulled = dvc(repo, "pull", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert load_prepared(repo / "prepared").sha256 == before["data"]  # verified against the manifest
    assert sha256(repo / "student" / MODEL_FILE) == before["model"]
    config = (repo / ".dvc" / "config").read_text()
    assert seaweedfs.endpoint in config and seaweedfs.secret_key not in config


def test_dvc_with_wrong_credentials_is_a_clear_error(
    make_params: Callable[..., Params], tmp_path: Path, seaweedfs: S3Store
) -> None:
    repo, prefix = dvc_repo_with_outputs(make_params, tmp_path, seaweedfs)
    env = {**os.environ, **seaweedfs.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret", "DVC_NO_ANALYTICS": "1"}
    pushed = dvc(repo, "push", env=env)
    assert pushed.returncode != 0
    assert "ERROR" in pushed.stderr and "Forbidden" in pushed.stderr
    assert seaweedfs.objects("dvc", prefix) == {}


def test_mlflow_artifacts_live_on_seaweedfs_and_no_secret_is_logged(
    make_params: Callable[..., Params],
    mlflow_server: str,
    seaweedfs: S3Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole pipeline against the tracking server; the client's environment holds the S3 secret
    (as a pod's would), and afterwards every param, tag and artifact is searched for it."""
    import mlflow

    for key, value in seaweedfs.env().items():
        monkeypatch.setenv(key, value)
    experiment = f"s3-{uuid.uuid4().hex[:8]}"
    params = make_params(
        tracking__uri=mlflow_server, tracking__experiment=experiment, tracking__registered_model=f"{experiment}-student"
    )
    result = steps.run_pipeline(params)
    assert result["promotion"].promoted

    objects = seaweedfs.objects("mlflow", "artifacts/")
    names = {key.rsplit("/", 1)[-1] for key in objects}
    assert {
        "params.yaml",
        "manifest.json",
        "learning_curves.png",
        "confusion_matrix.png",
        "report.md",
        "MLmodel",
        "model.pt2",
        MODEL_FILE,
    } <= names

    name = params.tracking.registered_model
    mlflow.set_tracking_uri(mlflow_server)
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion")  # artifacts come back from S3
    test_x = load_prepared(params.paths.prepared).split("test")[0][:8].float().numpy() / 255
    assert served.predict(test_x).shape == (8, 10)

    secret = seaweedfs.secret_key
    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 5
    for run in runs:
        for value in (*run.data.params.values(), *run.data.tags.values()):
            assert secret not in value, run.info.run_name
    model = client.get_registered_model(name)
    for mv in client.search_model_versions(f"name = '{name}'"):
        assert all(secret not in v for v in mv.tags.values())
    assert all(secret not in v for v in model.tags.values())
    leaks = [key for key, body in objects.items() if secret.encode() in body]
    assert leaks == []
    out = capsys.readouterr()
    assert secret not in out.out + out.err + caplog.text


def test_wrong_s3_credentials_for_mlflow_artifacts_are_a_clear_error(
    make_params: Callable[..., Params], tmp_path: Path, seaweedfs: S3Store
) -> None:
    """The client writes artifacts to S3 itself (an experiment whose artifact location is s3://): a
    wrong secret is one line naming the store and the variables to check, never the value. Each
    attempt is its own `kdpipe` process, as in production (MLflow caches S3 clients per process)."""
    import mlflow

    params = make_params()
    prefix = f"direct-{uuid.uuid4().hex[:8]}"
    mlflow.MlflowClient(params.tracking.uri).create_experiment(
        params.tracking.experiment, artifact_location=f"s3://mlflow/{prefix}"
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    wrong = f"wrong-{uuid.uuid4().hex}"

    def kdpipe_prepare(secret: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **seaweedfs.env(), "AWS_SECRET_ACCESS_KEY": secret}
        return subprocess.run(
            [KDPIPE, "-q", "prepare", "-c", str(params_file)], env=env, capture_output=True, text=True, timeout=300
        )

    failed = kdpipe_prepare(wrong)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr and wrong not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == (
        f"kdpipe: error: tracking: the prepare_data run failed against {params.tracking.uri}: the S3 store at "
        f"{seaweedfs.endpoint} refused the credentials (SignatureDoesNotMatch); check AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY"
    )
    assert seaweedfs.objects("mlflow", prefix) == {}

    done = kdpipe_prepare(seaweedfs.secret_key)
    assert done.returncode == 0, done.stderr
    assert any(key.endswith("/artifacts/params.yaml") for key in seaweedfs.objects("mlflow", prefix))
