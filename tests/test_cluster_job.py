"""The multi-node launcher's jobs (kdpipe.kubeflow.cluster_job, trainjob, pytorchjob) against a stand-in for the
Kubernetes API.

No Kubernetes API server can run here, so a small real HTTP server on 127.0.0.1 implements the custom-objects
endpoints the launcher calls (list by label, create, get, delete) and plays the Trainer controller: each job
created follows a scripted list of states, one per read. The client side is the real code: the kubernetes
client over HTTP, kdpipe's calls and its manifests (checked against the kubeflow-trainer-api models).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from kdpipe.infra.errors import KdpipeError
from kdpipe.kubeflow import cluster_job, pytorchjob, trainjob
from kdpipe.kubeflow.cluster_job import ATTEMPT_LABEL, RUN_LABEL, JobKind, Jobs, run_job
from servers import JsonHandler, free_port

NAMESPACE = "ml-nightly"
RUN = "3f2a9c1e-5d7b-4e8a-9c0d-1b2a3c4d5e6f"


@dataclass
class FakeCluster:
    """The API server's jobs by name, each job's remaining scripted states, the calls seen, and refusals."""

    kind: JobKind
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    scripts: list[list[str | None]] = field(default_factory=list)
    pending: dict[str, list[str | None]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)

    def condition(self, state: str | None) -> dict[str, Any]:
        if state is None:
            return {"conditions": [{"type": "Created", "status": "True"}]}
        kind = self.kind.succeeded_condition if state == cluster_job.SUCCEEDED else state
        return {"conditions": [{"type": "Created", "status": "True"}, {"type": kind, "status": "True"}]}

    def read(self, name: str) -> dict[str, Any]:
        """A GET advances the job's script by one state (its last state stays)."""
        script = self.pending[name]
        state = script.pop(0) if len(script) > 1 else script[0]
        self.jobs[name]["status"] = self.condition(state)
        return self.jobs[name]


def _handler(state: FakeCluster) -> type[BaseHTTPRequestHandler]:
    k = state.kind
    base = f"/apis/{k.group}/{k.version}/namespaces/{NAMESPACE}/{k.plural}"

    class Handler(JsonHandler):
        def _route(self, verb: str) -> str | None:
            url = urlparse(self.path)
            state.calls.append(f"{verb} {url.path.removeprefix(base) or '/'}")
            if verb in state.forbidden:
                self._reply({"kind": "Status", "reason": "Forbidden", "code": 403}, 403)
                return None
            return url.path.removeprefix(base).lstrip("/")

        def do_GET(self) -> None:
            name = self._route("list" if urlparse(self.path).path == base else "get")
            if name is None:
                return
            if not name:
                selector = parse_qs(urlparse(self.path).query)["labelSelector"][0]
                key, value = selector.split("=")
                found = [j for j in state.jobs.values() if j["metadata"]["labels"].get(key) == value]
                self._reply({"items": found})
            elif name in state.jobs:
                self._reply(state.read(name))
            else:
                self._reply({"kind": "Status", "reason": "NotFound", "code": 404}, 404)

        def do_POST(self) -> None:
            if self._route("create") is None:
                return
            job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = job["metadata"]["name"]
            if name in state.jobs:
                self._reply({"kind": "Status", "reason": "AlreadyExists", "code": 409}, 409)
                return
            state.jobs[name], state.pending[name] = job, list(state.scripts.pop(0))
            self._reply(job, 201)

        def do_DELETE(self) -> None:
            name = self._route("delete")
            if name is None:
                return
            state.jobs.pop(name, None)
            self._reply({"kind": "Status", "status": "Success"})

    return Handler


@pytest.fixture
def fake() -> Iterator[tuple[FakeCluster, Any]]:
    """A TrainJob stand-in, and a CustomObjectsApi of the real kubernetes client pointed at it."""
    from kubernetes import client

    state = FakeCluster(trainjob.TRAINJOB)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield state, client.CustomObjectsApi(client.ApiClient(config))
    finally:
        server.shutdown()
        server.server_close()


def _build(tmp_path: Path) -> Any:
    def build(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return trainjob.manifest(name, labels, tmp_path, nodes=2, gpus_per_node=4, deadline_s=3600)

    return build


def _run(state: FakeCluster, api: Any, tmp_path: Path, keep: str = "none", deadline_s: float = 30) -> Any:
    jobs = Jobs(api, state.kind, NAMESPACE)
    return run_job(jobs, RUN, _build(tmp_path), prefix="kdpipe-distill", keep=keep, deadline_s=deadline_s, poll_s=0.01)


def test_a_failed_first_attempt_is_retried_as_a_new_job_that_succeeds_and_both_are_deleted(
    fake: tuple[FakeCluster, Any], tmp_path: Path
) -> None:
    """Through the launcher's own call (multinode.run): the first TrainJob fails and is deleted at its end; the
    retried launcher reads the attempt it recorded on the PVC and creates a job of a new name."""
    from kdpipe.config import params_from_dict
    from kdpipe.kubeflow import multinode

    state, api = fake
    state.scripts = [[None, "Failed"], [None, None, cluster_job.SUCCEEDED]]
    params, where = params_from_dict({}), multinode.Placement(nodes=2, gpus_per_node=4)
    with pytest.raises(KdpipeError, match=r"TrainJob ml-nightly/kdpipe-distill-3f2a.*-a1 failed \(attempt 1\)"):
        multinode.run(params, tmp_path, RUN, where, api, NAMESPACE, poll_s=0.01)
    assert state.jobs == {}  # deleted at its end (keep_jobs: none)
    outcome = multinode.run(params, tmp_path, RUN, where, api, NAMESPACE, poll_s=0.01)  # Kubeflow's retry
    assert outcome.attempt == 2 and not outcome.collected_earlier
    assert outcome.name == cluster_job.job_name("kdpipe-distill", RUN, 2) and len(outcome.name) <= 63
    created = [c for c in state.calls if c.startswith("create")]
    assert len(created) == 2 and state.jobs == {} and (tmp_path / multinode.ATTEMPT_FILE).read_text() == "2"


def test_a_failed_job_kept_for_inspection_does_not_block_the_next_attempt(
    fake: tuple[FakeCluster, Any], tmp_path: Path
) -> None:
    state, api = fake
    state.scripts = [["Failed"], [cluster_job.SUCCEEDED]]
    with pytest.raises(KdpipeError, match="failed"):
        _run(state, api, tmp_path, keep="failed")
    outcome = _run(state, api, tmp_path, keep="failed")
    assert outcome.attempt == 2 and list(state.jobs) == [cluster_job.job_name("kdpipe-distill", RUN, 1)]


def test_a_job_that_succeeded_is_collected_without_a_new_create(fake: tuple[FakeCluster, Any], tmp_path: Path) -> None:
    """The launcher died after its job finished: the retry finds the job and collects it."""
    state, api = fake
    state.scripts = [[cluster_job.SUCCEEDED]]
    first = _build(tmp_path)(cluster_job.job_name("kdpipe-distill", RUN, 1), cluster_job.labels(RUN, 1))
    api.create_namespaced_custom_object(state.kind.group, state.kind.version, NAMESPACE, state.kind.plural, first)
    state.read(first["metadata"]["name"])  # the controller marks it done
    state.calls.clear()
    outcome = _run(state, api, tmp_path)
    assert outcome.collected_earlier and outcome.attempt == 1
    assert not [c for c in state.calls if c.startswith("create")]
    assert state.jobs == {}  # collected, then deleted


def test_the_deadline_ends_a_job_that_never_finishes_with_one_line(
    fake: tuple[FakeCluster, Any], tmp_path: Path
) -> None:
    state, api = fake
    state.scripts = [[None]]
    with pytest.raises(KdpipeError) as info:
        _run(state, api, tmp_path, deadline_s=0.3)
    assert "did not finish within 0.3 s (kubeflow.job_deadline_s): deleted" in str(info.value)
    assert "\n" not in str(info.value) and state.jobs == {}


def test_forbidden_is_one_line_naming_the_verb_and_the_resource(fake: tuple[FakeCluster, Any], tmp_path: Path) -> None:
    state, api = fake
    state.forbidden = {"create"}
    with pytest.raises(KdpipeError) as info:
        _run(state, api, tmp_path)
    assert str(info.value) == (
        "Kubernetes refused to create trainjobs.trainer.kubeflow.org in namespace ml-nightly (403 Forbidden): "
        "grant this pod's service account 'create' on trainjobs.trainer.kubeflow.org (docs: Kubeflow, RBAC)"
    )


def test_the_trainjob_is_what_the_trainer_api_models_read_back_and_carries_the_run_and_its_placement(
    tmp_path: Path,
) -> None:
    job = trainjob.manifest(
        "kdpipe-distill-x-a1",
        cluster_job.labels(RUN, 1),
        tmp_path,
        nodes=3,
        gpus_per_node=8,
        deadline_s=7200,
        task_config={"resources": {"limits": {"nvidia.com/gpu": "8"}, "requests": {"cpu": "16"}}},
    )
    spec = job["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert (spec["trainer"]["numNodes"], spec["trainer"]["numProcPerNode"], spec["activeDeadlineSeconds"]) == (
        3,
        8,
        7200,
    )
    assert spec["trainer"]["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": "8"}, "requests": {"cpu": "16"}}
    assert spec["trainer"]["command"][-4:] == ["distill", "-c", str(tmp_path / "params.yaml"), "--resume"]
    assert job["metadata"]["labels"][RUN_LABEL] == RUN and job["metadata"]["labels"][ATTEMPT_LABEL] == "1"
    (patch,) = spec["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert {v["name"] for v in pod["volumes"]} == {"kdpipe-cache", "dshm"} and pod["nodeSelector"]
    with pytest.raises(
        KdpipeError, match=r"do not read it back as written: spec\.trainer\.numNodez: sent 3, read None"
    ):
        bad = json.loads(json.dumps(job))
        bad["spec"]["trainer"]["numNodez"] = 3
        trainjob.check(bad)


def test_the_pytorchjob_path_for_training_operator_1_9_has_a_run_policy_deadline(tmp_path: Path) -> None:
    job = pytorchjob.manifest(
        "kdpipe-distill-x-a2", cluster_job.labels(RUN, 2), tmp_path, nodes=2, gpus_per_node=4, deadline_s=600
    )
    assert job["spec"]["runPolicy"] == {"activeDeadlineSeconds": 600}
    assert job["metadata"]["labels"][ATTEMPT_LABEL] == "2"
    assert (
        pytorchjob.PYTORCHJOB.state({"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}})
        == "Succeeded"
    )
