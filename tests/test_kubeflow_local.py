"""The whole Kubeflow pipeline, run by `kdpipe pipeline run-local` (kfp.local's SubprocessRunner) on a
small Fashion-MNIST subset.

Every component runs as a subprocess of this Python (``use_venv=False``), reads and writes real kfp
artifacts, and logs to a real MLflow store; the test then opens every artifact the run produced.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import EXPORT_ON, RESHOT_COUNT
from kdpipe.config import Params
from kdpipe.kubeflow import run_end
from pipeline_artifacts import check_run, check_tracking, run_local
from webhook_receiver import receiving, signed_with


def test_pipeline_runs_locally_and_produces_every_artifact(
    make_params: Callable[..., Params],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reshot: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole night under kfp.local, its exit handler included: a night that succeeded posts no notice."""
    monkeypatch.setenv(run_end.SECRET_ENV, "local-secret")
    with receiving() as receiver:
        params = make_params(
            data__train_subset=1000,
            data__test_subset=500,
            data__val_size=200,
            train__epochs=2,
            train__batch_size=64,
            validate__operational=[{"name": "reshot", "source": str(reshot)}],
            kubeflow__failure_webhook=receiver.url,
            **EXPORT_ON,
        )
        run = run_local(params, tmp_path, capsys)
    assert receiver.calls == []

    check_run(run, params, "http://127.0.0.1:5000", RESHOT_COUNT)
    check_tracking(params)


def test_a_failed_local_night_runs_the_exit_handler_which_posts_one_signed_notice(
    make_params: Callable[..., Params],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kfp.local runs the exit task after a failed task, with its final status: prepare fails on a data root that
    does not exist (before any MLflow run, so the notice names the task as kfp.local reports it), the run ends
    with one line, and the receiver gets one signed notice."""
    from kdpipe.cli import main
    from kdpipe.kubeflow.params import dump_params

    monkeypatch.setenv(run_end.SECRET_ENV, "local-secret")
    with receiving() as receiver:
        missing = {"data__source": "imagefolder", "data__root": str(tmp_path / "no-such-images")}
        params = make_params(**missing, kubeflow__failure_webhook=receiver.url)
        (tmp_path / "params.yaml").write_text(dump_params(params))
        args = ["pipeline", "run-local", "-c", str(tmp_path / "params.yaml"), "--pipeline-root", str(tmp_path / "kfp")]
        assert main(args) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("kdpipe: error: the local run failed")
    ((headers, body),) = receiver.calls
    assert signed_with("local-secret", headers, body)
    notice = receiver.bodies()[0]
    assert (notice["state"], notice["failed_task"]) == ("FAILED", "exit-handler-1")
    assert notice["error"] == "Task exit-handler-1 failed."
