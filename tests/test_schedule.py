"""`kdpipe pipeline schedule | submit` against a stand-in for the Kubeflow Pipelines API.

No Kubernetes cluster can run here, so the API server is replaced by a small real HTTP server on
127.0.0.1 that implements the few KFP v2beta1 REST endpoints kfp.Client calls (healthz,
experiments, recurring runs, runs) and keeps their state in memory. Everything on the client side
is the real code: the CLI, kdpipe.kubeflow.client and kfp.Client over HTTP.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from kdpipe.cli import main
from kdpipe.infra.errors import KdpipeError
from kdpipe.kubeflow.client import kfp_cron
from servers import JsonHandler

API = "/apis/v2beta1"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class FakeKfp:
    """The API server's state: experiments, recurring runs and runs by id, and the calls seen."""

    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    recurring_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


def _matches(item: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """The filter kfp.Client sends: EQUALS predicates on display_name."""
    for raw in query.get("filter", []):
        for predicate in json.loads(raw).get("predicates", []):
            if item.get(predicate["key"]) != predicate.get("stringValue"):
                return False
    return all(item.get(key) == values[0] for key, values in query.items() if key == "experiment_id")


def _handler(state: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _body(self) -> dict[str, Any]:
            return dict(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}"))

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            state.calls.append(f"GET {url.path}")
            if url.path == f"{API}/healthz":
                self._reply({"multi_user": False})
            elif url.path == f"{API}/experiments":
                self._reply({"experiments": [e for e in state.experiments.values() if _matches(e, query)]})
            elif url.path == f"{API}/recurringruns":
                found = [r for r in state.recurring_runs.values() if _matches(r, query)]
                self._reply({"recurringRuns": found, "total_size": len(found), "next_page_token": ""})
            else:
                self._reply({"error": f"no route {url.path}"}, 404)

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            state.calls.append(f"POST {path}")
            body = self._body()
            if path == f"{API}/experiments":
                body["experiment_id"] = uuid.uuid4().hex
                state.experiments[body["experiment_id"]] = body
            elif path == f"{API}/recurringruns":
                body.update(recurring_run_id=uuid.uuid4().hex, status="ENABLED")
                state.recurring_runs[body["recurring_run_id"]] = body
            elif path == f"{API}/runs":
                body.update(run_id=uuid.uuid4().hex, state="PENDING")
                state.runs[body["run_id"]] = body
            else:
                self._reply({"error": f"no route {path}"}, 404)
                return
            self._reply(body)

        def do_DELETE(self) -> None:
            path = urlparse(self.path).path
            state.calls.append(f"DELETE {path}")
            run_id = path.removeprefix(f"{API}/recurringruns/")
            if state.recurring_runs.pop(run_id, None) is None:
                self._reply({"error": f"recurring run {run_id} not found"}, 404)
                return
            self._reply({})

    return Handler


@pytest.fixture
def kfp_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeKfp]]:
    monkeypatch.setenv("HOME", str(tmp_path))  # no kfp context file of the machine's user
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    return path


def _parameters(run: dict[str, Any]) -> dict[str, Any]:
    return dict(run["runtime_config"]["parameters"])


def test_schedule_creates_the_nightly_run_then_updates_it_in_place(
    kfp_api: tuple[str, FakeKfp], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp_api
    params = _params_file(tmp_path)
    state.experiments["e0"] = {"experiment_id": "e0", "display_name": "kdpipe"}
    state.recurring_runs["other"] = {
        "recurring_run_id": "other",
        "display_name": "weekly-report",
        "experiment_id": "e0",
    }

    assert main(["pipeline", "schedule", "--host", host, "--cron", "0 2 * * *", "-c", str(params)]) == 0
    assert "created recurring run 'kdpipe-nightly'" in capsys.readouterr().out
    (first,) = [r for r in state.recurring_runs.values() if r["display_name"] == "kdpipe-nightly"]
    assert first["experiment_id"] == "e0"
    assert first["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert first["mode"] == "ENABLE" and first["max_concurrency"] == 1 and first["no_catchup"] is True
    assert first["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "kdpipe-distill"
    platform = first["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform["exec-distill"]["tolerations"]  # the GPU placement travels with the schedule
    assert yaml.safe_load(_parameters(first)["params_yaml"]) == yaml.safe_load(params.read_text())

    assert (
        main(
            [
                "pipeline",
                "schedule",
                "--host",
                host,
                "--cron",
                "30 3 * * *",
                "-c",
                str(params),
                "-p",
                "train.epochs=3",
                "--accelerator-count",
                "4",
            ]
        )
        == 0
    )
    assert "updated recurring run 'kdpipe-nightly'" in capsys.readouterr().out
    (second,) = [r for r in state.recurring_runs.values() if r["display_name"] == "kdpipe-nightly"]
    assert second["recurring_run_id"] != first["recurring_run_id"]
    assert second["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * *"
    assert _parameters(second)["overrides"] == ["train.epochs=3"]
    assert _parameters(second)["accelerator_count"] == 4
    assert f"DELETE {API}/recurringruns/{first['recurring_run_id']}" in state.calls
    assert set(state.recurring_runs) == {"other", second["recurring_run_id"]}
    assert len(state.experiments) == 1


def test_submit_starts_one_run_of_the_compiled_pipeline(
    kfp_api: tuple[str, FakeKfp], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp_api
    args = [
        "pipeline",
        "submit",
        "--host",
        host,
        "--experiment",
        "nightly",
        "-c",
        str(_params_file(tmp_path)),
        "--data-ref",
        "s3://bucket/fashion",
        "--run-name",
        "manual",
    ]
    assert main(args) == 0
    (run,) = state.runs.values()
    assert f"started run {run['run_id']}" in capsys.readouterr().out
    assert run["display_name"] == "manual"
    assert state.experiments[run["experiment_id"]]["display_name"] == "nightly"
    assert _parameters(run)["data_ref"] == "s3://bucket/fashion"
    spec = run["pipeline_spec"]["pipeline_spec"]
    night = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]  # every step runs inside the exit handler
    assert night["distill"]["retryPolicy"]["maxRetryCount"] == 3


def test_study_submit_starts_one_run_of_the_study_fan_out(
    kfp_api: tuple[str, FakeKfp], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp_api
    args = [
        "study",
        "--kubeflow",
        "submit",
        "--host",
        host,
        "--experiment",
        "studies",
        "--run-name",
        "study-1",
        "-c",
        str(_params_file(tmp_path)),
        "-p",
        "train.epochs=3",
        "--cells",
        "scratch",
        "srd",
        "--seeds",
        "0",
        "1",
        "--no-gap",
        "--parallelism",
        "2",
        "--accelerator-type",
        "amd.com/gpu",
    ]
    assert main(args) == 0
    (run,) = state.runs.values()
    assert f"started study run {run['run_id']} in experiment 'studies'" in capsys.readouterr().out
    assert run["display_name"] == "study-1" and state.experiments[run["experiment_id"]]["display_name"] == "studies"
    assert _parameters(run)["overrides"] == ["train.epochs=3"] and "accelerator_type" not in _parameters(run)
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    (loop,) = [t for t in tasks.values() if "parameterIterator" in t]
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == [
        {"cell": c, "seed": s} for s in (0, 1) for c in ("scratch", "srd")
    ]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    executors = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-study-run"]["nodeSelector"]
    resources = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]["exec-study-run"]["container"]
    assert resources["resources"]["accelerator"]["resourceType"] == "amd.com/gpu"


def test_a_bad_cron_or_params_is_refused_before_any_request(
    kfp_api: tuple[str, FakeKfp], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp_api
    params = str(_params_file(tmp_path))
    assert main(["pipeline", "schedule", "--host", host, "--cron", "every night", "-c", params]) == 2
    assert "--cron 'every night': expected 5 fields" in capsys.readouterr().err
    assert main(["pipeline", "schedule", "--host", host, "-c", params, "-p", "train.epochs=0"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert state.calls == []


def test_kfp_cron_has_a_leading_seconds_field() -> None:
    assert kfp_cron("0 2 * * *") == "0 0 2 * * *"
    assert kfp_cron("15 0 2 * * 1-5") == "15 0 2 * * 1-5"
    with pytest.raises(KdpipeError, match="expected 5 fields"):
        kfp_cron("* * *")
