"""The compiled pipeline: committed and current, and every cluster setting on the task it belongs to.

The YAML holds two documents (``yaml.safe_load_all``): the pipeline spec, then the Kubernetes
platform spec that kfp-kubernetes writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.kubeflow import cluster, multinode, pytorchjob
from kdpipe.kubeflow.image import IMAGE
from kdpipe.kubeflow.params import one_line, step_params
from kdpipe.kubeflow.run_end import SECRET_ENV
from kdpipe_pipelines.distill_pipeline import COMPILED, RETRIES, Options, compile_pipeline

REPO = Path(__file__).resolve().parents[1]
CHANNEL = "pipelinechannel--"  # how a task inside the exit handler's group reads a pipeline parameter
PARAMS_TEXT = (REPO / "params.yaml").read_text()


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled() -> tuple[dict[str, Any], dict[str, Any]]:
    return _load(COMPILED)


def _tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of the DAG, including those inside conditions."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_committed_pipeline_is_what_compile_writes_now(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "pipeline.yaml", PARAMS_TEXT)
    assert fresh.read_text() == COMPILED.read_text(), (
        f"{COMPILED.relative_to(REPO)} is stale: run `kdpipe pipeline compile` and commit it"
    )


def test_defaults_are_the_embedded_params_and_one_gpu(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert yaml.safe_load(inputs["params_yaml"]["defaultValue"]) == yaml.safe_load(PARAMS_TEXT)
    assert step_params(inputs["params_yaml"]["defaultValue"], []).data.source == "fashion_mnist"
    assert inputs["accelerator_type"]["defaultValue"] == cluster.GPU_RESOURCE
    assert inputs["accelerator_count"]["defaultValue"] == 1
    assert inputs["credentials_secret"]["defaultValue"] == cluster.CREDENTIALS_SECRET


def test_every_component_runs_in_the_project_image(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == {
        f"exec-{name}"
        for name in (
            "prepare-data",
            "evaluate-teacher",
            "teacher-outputs",
            "distill",
            "validate-student",
            "promote",
            "run-end",
        )
    }
    for executor in executors.values():
        container = executor["container"]
        assert container["image"] == IMAGE
        assert "pip install" not in " ".join(container["command"])  # the image already holds kfp and kdpipe


def test_distill_requests_gpus_from_pipeline_parameters(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, platform = compiled
    executors = spec["deploymentSpec"]["executors"]
    accelerator = executors["exec-distill"]["container"]["resources"]["accelerator"]
    assert accelerator == {
        "resourceType": "{{$.inputs.parameters['pipelinechannel--accelerator_type']}}",
        "resourceCount": "{{$.inputs.parameters['pipelinechannel--accelerator_count']}}",
    }
    distill = _tasks(spec)["distill"]
    assert distill["inputs"]["parameters"]["num_processes"] == {
        "componentInputParameter": CHANNEL + "accelerator_count"
    }
    # The teacher-outputs task fills the cache on one GPU (the distill step's precision is in its key) for
    # as many ranks as distill will run.
    assert sorted(name for name, e in executors.items() if "accelerator" in e["container"]["resources"]) == [
        "exec-distill",
        "exec-teacher-outputs",
    ]
    fill = executors["exec-teacher-outputs"]["container"]["resources"]["accelerator"]
    assert fill["resourceCount"] == "1"
    assert _tasks(spec)["teacher-outputs"]["inputs"]["parameters"]["gpus_per_node"] == {
        "componentInputParameter": CHANNEL + "accelerator_count"
    }
    for gpu_task in ("exec-distill", "exec-teacher-outputs"):
        gpu = platform[gpu_task]
        assert gpu["tolerations"] == [dict(t) for t in cluster.GPU_TOLERATIONS]
        assert gpu["nodeSelector"]["labels"] == cluster.GPU_NODE_SELECTOR
        assert gpu["emptyDirMounts"] == [{"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory"}]
    for name, executor in platform.items():
        if name not in ("exec-distill", "exec-teacher-outputs"):
            assert "tolerations" not in executor and "nodeSelector" not in executor, name


def test_every_task_reads_the_credentials_secret_as_env(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Every step gets the S3 and MLflow keys; the exit handler only the failure notice's signing secret."""
    _, platform = compiled
    assert len(platform) == 7
    for name, executor in platform.items():
        (secret,) = executor["secretAsEnv"]
        expected = [SECRET_ENV] if name == "exec-run-end" else cluster.SECRET_ENV
        assert {m["secretKey"]: m["envVar"] for m in secret["keyToEnv"]} == {k: k for k in expected}, name
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("credentials_secret")


def test_every_task_is_bounded_by_a_timeout_requests_and_labels_and_the_run_by_a_deadline_and_ttl(
    tmp_path: Path,
) -> None:
    """The ``kubeflow:`` section of the compiled params: each task's timeout, every task's CPU and memory
    request and limit, the pod labels (a Kueue queue, a cost centre) on every task, the run's deadline and TTL."""
    raw = yaml.safe_load(PARAMS_TEXT)
    labels = {"kueue.x-k8s.io/queue-name": "nightly", "cost-centre": "ml-platform"}
    raw["kubeflow"] |= {"labels": labels, "cpu_limit": "8", "run_deadline_s": 7200, "ttl_s": 3600}
    raw["kubeflow"]["timeouts_s"]["distill"], raw["kubeflow"]["job_deadline_s"] = 5400, 3600
    spec, platform = _load(compile_pipeline(tmp_path / "p.yaml", yaml.safe_dump(raw)))
    names = {f"exec-{step.replace('_', '-')}": step for step in raw["kubeflow"]["timeouts_s"]}
    assert set(platform) == set(names) == set(spec["deploymentSpec"]["executors"])
    for executor, step in names.items():
        assert platform[executor]["activeDeadlineSeconds"] == str(raw["kubeflow"]["timeouts_s"][step]), executor
        assert platform[executor]["podMetadata"]["labels"] == labels, executor
        resources = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]
        assert (resources["resourceCpuRequest"], resources["resourceCpuLimit"]) == ("2", "8"), executor
        assert (resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == ("8Gi", "64Gi"), executor
    assert platform["exec-distill"]["activeDeadlineSeconds"] == "5400"
    _, platform_doc = yaml.safe_load_all((tmp_path / "p.yaml").read_text())
    assert platform_doc["platforms"]["kubernetes"]["pipelineConfig"] == {
        "activeDeadlineSeconds": 7200,
        "resourceTtlOnCompletion": 3600,
    }


def test_retries_and_caching(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    tasks = _tasks(spec)
    assert (
        tasks["distill"]["retryPolicy"]
        == {"maxRetryCount": 3, "backoffDuration": "60s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}
        == {
            "maxRetryCount": RETRIES["num_retries"],
            "backoffDuration": RETRIES["backoff_duration"],
            "backoffFactor": RETRIES["backoff_factor"],
            "backoffMaxDuration": RETRIES["backoff_max_duration"],
        }
    )
    caching = {
        name: task["cachingOptions"].get("enableCache", False)
        for name, task in tasks.items()
        if "cachingOptions" in task
    }
    assert caching == {
        "prepare-data": True,
        "evaluate-teacher": False,
        "teacher-outputs": False,
        "distill": False,
        "validate-student": False,
        "promote": False,
        "run-end": False,
    }


def test_promote_runs_only_when_validation_passed(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    (gate,) = [t for t in _tasks(spec).values() if t.get("triggerPolicy", {}).get("condition")]
    assert (
        gate["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--validate-student-Output'] == true"
    )
    assert "promote" in spec["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert "promote" not in spec["root"]["dag"]["tasks"]


def test_the_exit_handler_runs_after_every_task_of_the_night_with_its_final_status(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, _ = compiled
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "run-end"}
    body = spec["components"][root["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert {"prepare-data", "evaluate-teacher", "teacher-outputs", "distill", "validate-student"} <= set(body)
    ending = root["run-end"]
    assert ending["dependentTasks"] == ["exit-handler-1"]
    assert ending["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert ending["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"] == "exit-handler-1"


def test_a_data_cache_pvc_is_mounted_on_every_task(tmp_path: Path) -> None:
    spec, platform = _load(compile_pipeline(tmp_path / "p.yaml", PARAMS_TEXT, Options(data_cache_pvc="kd-cache")))
    for name, executor in platform.items():
        (mount,) = executor["pvcMount"]
        assert (
            mount["mountPath"] == cluster.CACHE_PATH
            and mount["pvcNameParameter"]["runtimeValue"]["constant"] == "kd-cache"
        ), name
    for task in _tasks(spec).values():
        if "cache_dir" in task.get("inputs", {}).get("parameters", {}):
            assert task["inputs"]["parameters"]["cache_dir"]["runtimeValue"]["constant"] == cluster.CACHE_PATH


@pytest.mark.parametrize("api", ["trainjob", "pytorchjob"])
def test_nodes_compile_distill_as_a_launcher_that_hands_its_gpus_to_the_job_through_its_task_config(
    tmp_path: Path, api: str
) -> None:
    """``--nodes 3``: the launcher task names the job's nodes and GPUs; the component passes its resources,
    tolerations, node selector and affinity through to the job without applying them to its own pod (no GPU
    request there), and its env and volumes to both."""
    with pytest.raises(KdpipeError, match="needs --data-cache-pvc"):
        compile_pipeline(tmp_path / "p.yaml", PARAMS_TEXT, Options(nodes=2))
    spec, platform = _load(
        compile_pipeline(tmp_path / "p.yaml", PARAMS_TEXT, Options(data_cache_pvc="shared", nodes=3, training_api=api))
    )
    launcher = _tasks(spec)["distill-multinode"]
    assert launcher["inputs"]["parameters"]["nodes"]["runtimeValue"]["constant"] == 3
    assert launcher["inputs"]["parameters"]["training_api"]["runtimeValue"]["constant"] == api
    assert launcher["inputs"]["parameters"]["gpus_per_node"] == {
        "componentInputParameter": CHANNEL + "accelerator_count"
    }
    assert launcher["retryPolicy"]["maxRetryCount"] == 3
    passed = {
        p["field"]: p.get("applyToTask", False)
        for p in spec["components"]["comp-distill-multinode"]["taskConfigPassthroughs"]
    }
    assert passed == {
        "RESOURCES": False,
        "KUBERNETES_TOLERATIONS": False,
        "KUBERNETES_NODE_SELECTOR": False,
        "KUBERNETES_AFFINITY": False,
        "ENV": True,
        "KUBERNETES_VOLUMES": True,
    }
    resources = spec["deploymentSpec"]["executors"]["exec-distill-multinode"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--accelerator_count']}}"
    assert platform["exec-distill-multinode"]["tolerations"] == [dict(t) for t in cluster.GPU_TOLERATIONS]
    assert platform["exec-distill-multinode"]["pvcMount"][0]["mountPath"] == cluster.CACHE_PATH


def test_pytorchjob_nodes_is_a_deprecated_alias_of_nodes_with_the_pytorchjob_api(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kdpipe.cli import main

    out = tmp_path / "p.yaml"
    args = ["pipeline", "compile", "-c", str(REPO / "params.yaml"), "-o", str(out), "--data-cache-pvc", "shared"]
    assert main([*args, "--pytorchjob-nodes", "2"]) == 0
    assert "--pytorchjob-nodes is deprecated: use --nodes 2 --training-api pytorchjob" in caplog.text
    launcher = _tasks(_load(out)[0])["distill-multinode"]["inputs"]["parameters"]
    assert (launcher["nodes"]["runtimeValue"]["constant"], launcher["training_api"]["runtimeValue"]["constant"]) == (
        2,
        "pytorchjob",
    )


def test_pytorchjob_manifest_places_torchrun_pods_on_gpu_nodes(tmp_path: Path) -> None:
    job = pytorchjob.manifest(
        "kdpipe-distill-x", {}, tmp_path, nodes=3, gpus_per_node=4, pvc_name="shared", secret_name="creds"
    )
    assert job["kind"] == "PyTorchJob" and job["spec"]["nprocPerNode"] == "4"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    pod = replicas["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["command"][1:4] == ["-m", "torch.distributed.run", "-m"]  # torchrun reads PET_* from the operator
    assert container["command"][-3:] == ["-c", str(tmp_path / "params.yaml"), "--resume"]
    assert container["resources"]["limits"] == {cluster.GPU_RESOURCE: 4}
    assert {e["name"] for e in container["env"]} == set(cluster.SECRET_ENV)
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == {"creds"}
    assert pod["tolerations"] == [dict(t) for t in cluster.GPU_TOLERATIONS]
    assert pod["nodeSelector"] == cluster.GPU_NODE_SELECTOR
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kdpipe-cache"]["persistentVolumeClaim"] == {"claimName": "shared"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}
    one = pytorchjob.manifest("one", {}, tmp_path, nodes=1, gpus_per_node=2)
    assert "Worker" not in one["spec"]["pytorchReplicaSpecs"]
    assert pytorchjob.PYTORCHJOB.state({"status": {"conditions": [{"type": "Running", "status": "True"}]}}) is None


def test_params_default_is_single_line_yaml_of_the_same_params() -> None:
    text = one_line(PARAMS_TEXT)
    assert "\n" not in text
    assert yaml.safe_load(text) == yaml.safe_load(PARAMS_TEXT)


def test_multinode_stage_reads_the_data_on_the_shared_volume_by_reference_and_copies_it_at_most_once(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    params = make_params()
    for name in ("prepared", "teacher"):
        Path(getattr(params.paths, name)).mkdir(parents=True)
        (Path(getattr(params.paths, name)) / f"{name}.bin").write_bytes(b"x")
    (Path(params.paths.prepared) / "manifest.json").write_text(json.dumps({"sha256": "ab" * 32}))
    pvc = tmp_path / "pvc"
    work = pvc / "runs" / "r1"
    work.mkdir(parents=True)
    staged = multinode.stage(params, work, pvc)
    shared = pvc / "prepared" / ("ab" * 8)
    assert (shared / "prepared.bin").exists() and (work / "teacher" / "teacher.bin").exists()
    reread = step_params((work / "params.yaml").read_text(), [])
    assert reread == staged
    assert {reread.paths.prepared, reread.paths.student, reread.paths.checkpoints} == {
        str(shared),
        str(work / "student"),
        str(work / "checkpoints"),
    }
    copied = (shared / "prepared.bin").stat().st_mtime_ns
    (pvc / "runs" / "r2").mkdir()
    assert multinode.stage(params, pvc / "runs" / "r2", pvc).paths.prepared == str(shared)
    assert (shared / "prepared.bin").stat().st_mtime_ns == copied  # the second night read it, did not copy it
    on_pvc = params.model_copy(update={"paths": params.paths.model_copy(update={"prepared": str(shared)})})
    assert multinode.stage(on_pvc, pvc / "runs" / "r2", pvc).paths.prepared == str(shared)
