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
from pipeline_artifacts import check_run, check_tracking, run_local


def test_pipeline_runs_locally_and_produces_every_artifact(
    make_params: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str], reshot: Path
) -> None:
    params = make_params(
        data__train_subset=1000,
        data__test_subset=500,
        data__val_size=200,
        train__epochs=2,
        train__batch_size=64,
        validate__operational=[{"name": "reshot", "source": str(reshot)}],
        **EXPORT_ON,
    )
    run = run_local(params, tmp_path, capsys)

    check_run(run, params, "http://127.0.0.1:5000", RESHOT_COUNT)
    check_tracking(params)
