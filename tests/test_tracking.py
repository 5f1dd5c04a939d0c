"""MLflow tracking through the real steps on the embedded default store (a SQLite file).

What a user sees in the MLflow UI after `kdpipe run`: one run per step grouped by the pipeline-run
id, lineage tags, flattened params, per-epoch metrics with the projector's effective rank, curves,
confusion matrix, report, params.yaml and manifest, and the student registered as champion, loading
back through ``models:/<name>@champion`` as PyTorch and as pyfunc with the trained module's outputs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from kdpipe import __version__, steps
from kdpipe.cli import main
from kdpipe.config import Params, feature_dim
from kdpipe.data.prepared import load_prepared
from kdpipe.infra.errors import ConfigError, KdpipeError
from kdpipe.infra.files import DECISION_FILE
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.steps.pipeline_run import PIPELINE_RUN_ENV, with_pipeline_run_id
from kdpipe.tracking.runs import step_run
from kdpipe.training.diagnostics import effective_rank
from servers import free_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def new_pipeline_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh pipeline-run id, as a new `kdpipe run` process would have."""
    monkeypatch.setenv(PIPELINE_RUN_ENV, uuid.uuid4().hex[:12])


def runs_by_step(params: Params) -> dict[str, list[Any]]:
    import mlflow

    client = mlflow.MlflowClient(params.tracking.uri)
    exp = client.get_experiment_by_name(params.tracking.experiment)
    out: dict[str, list[Any]] = {}
    for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        out.setdefault(run.data.tags.get("kdpipe.step", "?"), []).append(run)
    return out


def download(params: Params, run_id: str, path: str, dst: Path) -> Path:
    import mlflow

    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=params.tracking.uri
        )
    )


def test_pipeline_run_is_tracked_and_the_champion_serves_the_trained_student(
    make_params: Callable[..., Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    new_pipeline_run(monkeypatch)
    params = make_params()
    result = steps.run_pipeline(params)
    assert result["promotion"].promoted and "v1 is the new champion" in result["promotion"].message

    runs = runs_by_step(params)
    assert set(runs) == {"prepare_data", "evaluate_teacher", "distill", "validate_student", "promote"}
    data = load_prepared(params.paths.prepared)
    commit = runs["distill"][0].data.tags["kdpipe.git_commit"]
    is_ancestor = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=Path(steps.__file__).parent
    )
    assert is_ancestor.returncode == 0, f"kdpipe.git_commit {commit} is not a commit of this repository"
    for step, (run,) in runs.items():
        tags = run.data.tags
        assert run.info.status == "FINISHED", step
        assert tags["kdpipe.pipeline_run_id"] == os.environ[PIPELINE_RUN_ENV]
        assert tags["kdpipe.data_sha256"] == data.sha256
        assert tags["kdpipe.git_commit"] == commit and tags["kdpipe.version"] == __version__
        assert tags["kdpipe.teacher_source"] == "train"
        assert run.data.params["train.epochs"] == "1" and run.data.params["method.srd.alpha"] == "4.0"
        assert "params.yaml" in {
            a.path for a in mlflow.MlflowClient(params.tracking.uri).list_artifacts(run.info.run_id)
        }
    for step in ("evaluate_teacher", "distill", "validate_student"):
        assert runs[step][0].data.tags["kdpipe.device"] == "cpu"
        assert runs[step][0].data.tags["kdpipe.teacher_version"].startswith("train:")

    distill = runs["distill"][0]
    client = mlflow.MlflowClient(params.tracking.uri)
    for key in ("loss", "loss_ce", "loss_kl", "loss_feat", "train_acc", "val_acc", "lr", "images_per_s"):
        assert [m.step for m in client.get_metric_history(distill.info.run_id, key)] == [1], key
    (hours,) = client.get_metric_history(distill.info.run_id, "gpu_hours")
    (seconds,) = client.get_metric_history(distill.info.run_id, "train_seconds")
    assert hours.value == 0.0 and seconds.value > 0  # a CPU run uses no GPU (the arithmetic: test_training)
    (rank,) = client.get_metric_history(distill.info.run_id, "projector_effective_rank")
    assert 1.0 <= rank.value <= feature_dim(params.teacher.arch)

    arts = tmp_path / "downloaded"
    curves = download(params, distill.info.run_id, "learning_curves.png", arts)
    assert curves.read_bytes().startswith(PNG_MAGIC)
    validate_id = runs["validate_student"][0].info.run_id
    assert download(params, validate_id, "confusion_matrix.png", arts).read_bytes().startswith(PNG_MAGIC)
    report = download(params, validate_id, "report.md", arts).read_text()
    assert "teacher (cnn16)" in report and "student (cnn8)" in report and "champion" in report
    assert json.loads(download(params, validate_id, "manifest.json", arts).read_text())["sha256"] == data.sha256
    logged_params = yaml.safe_load(download(params, validate_id, "params.yaml", arts).read_text())
    assert logged_params == with_pipeline_run_id(params).to_dict()  # what the run ran with: the id resolved
    assert logged_params["tracking"]["pipeline_run_id"] == os.environ[PIPELINE_RUN_ENV]

    name = params.tracking.registered_model
    mlflow.set_tracking_uri(params.tracking.uri)
    as_torch = mlflow.pytorch.load_model(f"models:/{name}@champion")
    as_pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert not any("projector" in k for k in as_torch.state_dict())
    trained, _ = load_model(Path(params.paths.student) / MODEL_FILE)
    assert sum(p.numel() for p in as_torch.parameters()) == sum(p.numel() for p in trained.parameters())

    images = data.split("test")[0][:64].float() / 255  # what users feed: floats in [0, 1]
    mean = torch.tensor(data.manifest["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(data.manifest["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = trained((images - mean) / std)
        got_torch = as_torch(images)
    got_pyfunc = torch.from_numpy(np.asarray(as_pyfunc.predict(images.numpy())))
    torch.testing.assert_close(got_torch, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_pyfunc, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(got_pyfunc.argmax(1), expected.argmax(1))


def test_running_again_on_the_same_data_keeps_the_champion_unless_beaten(
    make_params: Callable[..., Params], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acceptance case: the same params and data again register a new challenger, and the
    champion moves only when that challenger beats it by gate.min_improvement; the output says which."""
    import mlflow

    params = make_params(gate__min_improvement=0.02)
    new_pipeline_run(monkeypatch)
    first_run = steps.run_pipeline(params)
    first, val_first = first_run["promotion"], first_run["validation"].gate.student["top1"]
    new_pipeline_run(monkeypatch)
    second = steps.run_pipeline(params)
    record = second["promotion"]

    client = mlflow.MlflowClient(params.tracking.uri)
    name = params.tracking.registered_model
    champion = client.get_model_version_by_alias(name, "champion")
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert first.version == "1" and record.version == "2" and str(challenger.version) == "2"
    test_top1_first = float(
        client.get_model_version(name, "1").tags["kdpipe.top1"]
    )  # the version records the test figure
    assert test_top1_first == pytest.approx(first_run["validation"].student["top1"])
    delta = second["validation"].gate.student["top1"] - val_first  # the gate decides on gate.split (val)
    if delta >= 0.02:
        assert record.promoted and str(champion.version) == "2"
        assert "v2 is the new champion (previous: v1)" in record.message
    else:
        assert not record.promoted and str(champion.version) == "1"
        assert "v2 stays challenger, champion stays v1" in record.message
        assert "does not beat" in record.message or "less than gate.min_improvement 0.0200" in record.message
    validation = json.loads((Path(params.paths.validation) / DECISION_FILE).read_text())
    assert validation["champion"]["version"] == "1" and validation["champion"]["top1"] == pytest.approx(val_first)


def test_failed_step_ends_its_run_failed_with_the_reason(make_params: Callable[..., Params]) -> None:
    import mlflow

    params = make_params(teacher__source="models:/no-such-teacher@prod")
    steps.prepare_data(params)
    with pytest.raises(
        KdpipeError, match="models:/no-such-teacher@prod: the registered model 'no-such-teacher' has no alias 'prod'"
    ):
        steps.evaluate_teacher(params)
    (run,) = runs_by_step(params)["evaluate_teacher"]
    assert run.info.status == "FAILED"
    assert "no-such-teacher" in run.data.tags["kdpipe.error"]

    with pytest.raises(ValueError, match="boom"), step_run(with_pipeline_run_id(params), "custom"):
        raise ValueError("boom")
    client = mlflow.MlflowClient(params.tracking.uri)
    (custom,) = client.search_runs(
        [client.get_experiment_by_name(params.tracking.experiment).experiment_id], "tags.`kdpipe.step` = 'custom'"
    )
    assert custom.info.status == "FAILED" and custom.data.tags["kdpipe.error"] == "ValueError: boom"


def test_unreachable_tracking_server_fails_before_any_training(
    make_params: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(make_params().to_dict()))
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["run", "-c", str(params_file), "-p", f"tracking.uri={uri}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"kdpipe: error: tracking.uri: cannot reach MLflow at {uri} (connection refused)"
    assert not Path(make_params().paths.prepared).exists()
    assert not Path(make_params().paths.checkpoints).exists()


def test_credentials_in_the_tracking_uri_are_refused(make_params: Callable[..., Params]) -> None:
    with pytest.raises(ConfigError, match=r"tracking\.uri: must not contain credentials; set MLFLOW_TRACKING_USERNAME"):
        make_params(tracking__uri="http://user:hunter2@mlflow.example:5000")


def test_effective_rank_measures_how_many_directions_are_used() -> None:
    gen = torch.Generator().manual_seed(0)
    spread = torch.randn(4096, 8, generator=gen)
    collapsed = torch.randn(4096, 1, generator=gen) @ torch.randn(1, 8, generator=gen)
    assert effective_rank(spread) == pytest.approx(8, rel=0.05)
    assert effective_rank(collapsed) == pytest.approx(1, abs=1e-3)
    assert effective_rank(torch.ones(16, 4)) == 0.0
    assert math.isfinite(effective_rank(torch.randn(3, 64, generator=gen)))


def test_under_kfps_mlflow_integration_each_step_logs_into_its_task_run_and_kfp_ends_it(
    make_params: Callable[..., Params], mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KFP 2.17's MLflow integration (KEP-12862) opens a run per pipeline run and a nested run per task, sets the
    task run's ``MLFLOW_RUN_ID`` in its environment and ends it itself. No KFP backend runs here, so this test
    plays KFP against a real ``mlflow server``; each step gets its params as its component does
    (:func:`kdpipe.kubeflow.params.step_params`). The whole pipeline leaves exactly KFP's runs, and they hold
    kdpipe's tags and metrics; kdpipe ends none of them."""
    from mlflow import MlflowClient

    from kdpipe.kubeflow.params import KFP_TASK_RUN_ENV, dump_params, step_params
    from kdpipe.tracking.runs import PARENT_TAG

    suffix = uuid.uuid4().hex[:8]
    client = MlflowClient(mlflow_server)
    kfp_experiment = client.create_experiment(f"kfp-{suffix}")
    text = dump_params(
        make_params(
            tracking__uri=mlflow_server,
            tracking__experiment=f"kdpipe-own-{suffix}",
            tracking__registered_model=f"kfp-student-{suffix}",
            data__train_subset=1000,
            data__test_subset=500,
            data__val_size=200,
        )
    )
    parent = client.create_run(kfp_experiment, run_name="kdpipe-distill-run").info.run_id
    night = [
        ("prepare-data", steps.prepare_data),
        ("evaluate-teacher", steps.evaluate_teacher),
        ("distill", steps.distill),
        ("validate-student", steps.validate_student),
        ("promote", steps.promote),
    ]
    task_runs = {}
    for task, step in night:
        task_runs[task] = client.create_run(kfp_experiment, run_name=task, tags={PARENT_TAG: parent}).info.run_id
        monkeypatch.setenv(KFP_TASK_RUN_ENV, task_runs[task])
        step(step_params(text, [], f"kfp-run-{suffix}"))
        assert client.get_run(task_runs[task]).info.status == "RUNNING", f"kdpipe ended KFP's {task} run"
        client.set_terminated(task_runs[task], "FINISHED")  # as KFP does
    found = client.search_runs([kfp_experiment])
    assert sorted(r.info.run_id for r in found) == sorted([parent, *task_runs.values()])
    assert client.get_experiment_by_name(f"kdpipe-own-{suffix}") is None or not client.search_runs(
        [client.get_experiment_by_name(f"kdpipe-own-{suffix}").experiment_id]
    )
    by_id = {r.info.run_id: r for r in found}
    for task, run_id in task_runs.items():
        run = by_id[run_id]
        assert run.data.tags["kdpipe.pipeline_run_id"] == f"kfp-run-{suffix}", task
        assert run.data.tags[PARENT_TAG] == parent, task  # one level under KFP's pipeline run, not two
    assert by_id[task_runs["distill"]].data.tags["kdpipe.step"] == "distill"
    assert "loss" in by_id[task_runs["distill"]].data.metrics
    assert "student_test_top1" in by_id[task_runs["validate-student"]].data.metrics
