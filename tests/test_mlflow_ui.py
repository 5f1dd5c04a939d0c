"""The MLflow UI as a reviewer opens it each morning, and the registry's webhook as a deployer hears it.

A real ``mlflow server`` (SQLite, artifacts on SeaweedFS) takes two real ``kdpipe run``s: the first
student becomes champion, the second (trained with a learning rate too small to learn) stays
challenger. A webhook registered with ``kdpipe registry webhook add`` calls a real HTTP receiver on
127.0.0.1. The UI is read in Debian's chromium, driven by Playwright through ``executable_path``
(``make test`` installs it with scripts/ensure-chromium.sh); screenshots go to the test's output
directory, or to ``$KDPIPE_SCREENSHOTS`` when set (that is how the README's images are made).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kdpipe.infra.files import MODEL_RECORD_FILE
from kdpipe.steps.pipeline_run import PIPELINE_RUN_ENV
from kdpipe.tracking import tags
from servers import S3Store, start_mlflow
from webhook_receiver import Receiver, receiving, signed_with

KDPIPE = str(Path(sys.executable).with_name("kdpipe"))
SECRET_ENV = "KDPIPE_TEST_WEBHOOK_SECRET"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
PAGE_SETTLE_S = 60.0  # the UI renders client-side; the text it waits for appears within this


@dataclass
class Reviewed:
    uri: str
    experiment: str
    model: str
    runs: list[subprocess.CompletedProcess[str]]
    receiver: Receiver
    secret: str
    shots: Path
    work: Path


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, raw_root: Path, seaweedfs: S3Store) -> Iterator[Reviewed]:
    work = tmp_path_factory.mktemp("mlflow-ui")
    (work / "server").mkdir()
    # A receiver on loopback over http: the server must be told both are fine (they are not by default).
    server, uri = start_mlflow(
        work / "server",
        seaweedfs,
        f"ui-{uuid.uuid4().hex[:8]}",
        server_env={"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true"},
    )
    hooks = contextlib.ExitStack()
    receiver = hooks.enter_context(receiving("/hooks/mlflow"))
    hook_url = receiver.url
    secret = uuid.uuid4().hex
    threads = os.environ.get("KDPIPE_TEST_THREADS", "2")
    raw = {
        "data": {"root": str(raw_root), "train_subset": 2000, "test_subset": 1000, "val_size": 500},
        "teacher": {"arch": "cnn16", "train": {"epochs": 1, "batch_size": 128}},
        "student": {"arch": "cnn8"},
        "train": {"epochs": 2, "batch_size": 128},
        "runtime": {"num_threads": int(threads), "progress": "off", "device": "cpu"},
        "validate": {"min_top1": 0.0, "max_teacher_gap": None, "max_latency_ms": None},
        "tracking": {
            "uri": uri,
            "experiment": "review",
            "registered_model": "reviewed-student",
            "system_metrics_seconds": 1,
        },
        "paths": {
            k: str(work / k)
            for k in ("prepared", "teacher", "student", "checkpoints", "validation", "promotion", "teacher_cache")
        },
    }
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in (PIPELINE_RUN_ENV, PROGRESS_BAR_ENV)}
    env.update({**seaweedfs.env(), SECRET_ENV: secret})

    def kdpipe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KDPIPE, *args, "-c", str(params_file)], cwd=work, capture_output=True, text=True, env=env, timeout=900
        )

    try:
        added = kdpipe("registry", "webhook", "add", hook_url, "--secret-env", SECRET_ENV)
        assert added.returncode == 0, added.stderr[-3000:]
        assert secret not in added.stdout + added.stderr
        champion = kdpipe("run")
        challenger = kdpipe("run", "-p", "train.lr=0.00001", "-p", "train.seed=1")
        for done in (champion, challenger):
            assert done.returncode == 0, done.stderr[-3000:]
        assert "is the new champion" in champion.stdout and "stays challenger" in challenger.stdout
        shots = Path(os.environ.get("KDPIPE_SCREENSHOTS") or work / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        yield Reviewed(uri, "review", "reviewed-student", [champion, challenger], receiver, secret, shots, work)
    finally:
        hooks.close()
        server.stop()


def _printed_link(run: subprocess.CompletedProcess[str], label: str) -> str:
    (line,) = [line for line in run.stdout.splitlines() if line.startswith(f"{label}: ")]
    return line.removeprefix(f"{label}: ")


def test_a_webhook_call_is_signed_and_names_each_champion_move(reviewed: Reviewed) -> None:
    """Exactly one signed `champion` call for the champion move, none for the version that stayed challenger;
    each ONNX sibling's aliases follow the student's, so its moves come as calls of their own, the same ones."""
    import mlflow

    client = mlflow.MlflowClient(reviewed.uri)
    student_moves = [("1", "challenger"), ("1", "champion"), ("2", "challenger")]
    expected = [(reviewed.model, version, alias) for version, alias in student_moves]
    for suffix in ("onnx", "onnx-int8"):
        sibling = f"{reviewed.model}-{suffix}"
        exported = {
            mv.tags["kdpipe.student_version"]: mv.version for mv in client.search_model_versions(f"name = '{sibling}'")
        }
        expected += [(sibling, exported[v], alias) for v, alias in student_moves if v in exported]
    assert len(expected) > 3, "the champion's ONNX sibling was registered"
    deadline = time.monotonic() + PAGE_SETTLE_S
    while time.monotonic() < deadline and len(reviewed.receiver.calls) < len(expected):
        time.sleep(0.5)  # the server delivers from a thread of its own
    events = reviewed.receiver.bodies()
    moves = [(e["data"]["name"], e["data"]["version"], e["data"]["alias"]) for e in events]
    assert sorted(moves) == sorted(expected)
    champions = [m for m in moves if m[2] == "champion"]
    assert [m for m in champions if m[0] == reviewed.model] == [(reviewed.model, "1", "champion")]
    assert len(champions) == len({m[0] for m in champions}), "one champion call per registered model"
    for headers, body in reviewed.receiver.calls:
        assert signed_with(reviewed.secret, headers, body)


def test_kdpipe_output_has_no_mlflow_progress_bars(reviewed: Reviewed) -> None:
    """The second run downloads the champion to measure it: MLflow would draw its bars there."""
    challenger = reviewed.runs[1]
    assert "does not beat the champion v1" in challenger.stdout, "the champion was downloaded and measured"
    assert "Downloading artifacts" not in challenger.stdout + challenger.stderr


def test_the_mlflow_ui_opens_on_training_runs_with_datasets_model_metrics_and_descriptions(reviewed: Reviewed) -> None:
    """What a reviewer sees, in a real browser, from the links kdpipe prints."""
    from mlflow import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    client = MlflowClient(reviewed.uri)
    experiment = client.get_experiment_by_name(reviewed.experiment)
    experiment_id = experiment.experiment_id
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    described = client.search_runs([experiment_id])
    assert all(r.data.tags.get(tags.RUN_DESCRIPTION) for r in described), "every step run has a description"
    runs = _printed_link(reviewed.runs[0], "runs")
    assert runs == f"{reviewed.uri}/#/experiments/{experiment_id}?workflowType=machine_learning"
    model_page = _printed_link(reviewed.runs[0], "registered model")
    distill = client.search_runs(
        [experiment_id], f"tags.`{tags.STEP}` = 'distill'", order_by=["attributes.start_time ASC"]
    )[0]  # the champion's
    (validate,) = client.search_runs(
        [experiment_id],
        f"tags.`{tags.STEP}` = 'validate_student' and "
        f"tags.`{tags.PIPELINE_RUN_ID}` = '{distill.data.tags[tags.PIPELINE_RUN_ID]}'",
    )
    manifest = json.loads((reviewed.work / "prepared" / "manifest.json").read_text())
    model_id = json.loads((reviewed.work / "student" / MODEL_RECORD_FILE).read_text())["model_id"]  # the last student
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `bash scripts/ensure-chromium.sh` (make test does)"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(PAGE_SETTLE_S * 1000)

        page.goto(runs)
        expect(page.get_by_text(f"distill-{distill.data.tags[tags.PIPELINE_RUN_ID]}")).to_be_visible(
            timeout=PAGE_SETTLE_S * 1000
        )
        expect(page.get_by_role("columnheader", name="Dataset").first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        assert page.get_by_text("Token usage").count() == 0, "the training view, not the GenAI overview"
        page.screenshot(path=str(reviewed.shots / "training-runs.png"))

        page.goto(
            f"{reviewed.uri}/#/experiments/{experiment_id}/runs/{distill.info.run_id}?workflowType=machine_learning"
        )
        digest = manifest["sha256"][:36]
        expect(page.get_by_text(f"{manifest['source']}-train").first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        expect(page.get_by_text(digest[:12], exact=False).first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        expect(page.get_by_text("epochs, final val top-1").first).to_be_visible(
            timeout=PAGE_SETTLE_S * 1000
        )  # the run's description
        page.screenshot(path=str(reviewed.shots / "distill-run.png"))

        page.goto(f"{reviewed.uri}/#/experiments/{experiment_id}/models/{model_id}?workflowType=machine_learning")
        expect(page.get_by_text(f"{manifest['source']}-test").first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        page.get_by_placeholder("Search metrics").fill("student_test")
        expect(page.get_by_text("student_test_top1").first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        page.get_by_text("Metrics (").first.scroll_into_view_if_needed()
        page.screenshot(path=str(reviewed.shots / "student-model.png"))

        page.goto(model_page)
        expect(page.get_by_text("@ champion").first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        page.goto(f"{reviewed.uri}/#/models/{reviewed.model}/versions/1?workflowType=machine_learning")
        expect(page.get_by_text("champion (compared with none)").first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        expect(page.get_by_text("Pipeline run").first).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        page.screenshot(path=str(reviewed.shots / "champion-version.png"))

        page.goto(
            f"{reviewed.uri}/#/experiments/{experiment_id}/runs/{validate.info.run_id}/artifacts"
            "?workflowType=machine_learning"
        )
        page.get_by_text("report.md").click()
        expect(page.get_by_role("heading", name="kdpipe validation report")).to_be_visible(timeout=PAGE_SETTLE_S * 1000)
        page.screenshot(path=str(reviewed.shots / "validation-report.png"))
        browser.close()
    print(f"screenshots: {reviewed.shots}")
