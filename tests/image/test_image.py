"""The image `make image` built, run as Kubeflow runs it: `make image-check` (marker ``image``).

These tests are left out of `make test`: building the image takes longer than CI allows on a fresh
machine, which has no cached layers. They need the built image and a Docker API at ``DOCKER_HOST``.
scripts/image-check.sh provides that API: a Docker daemon, or ``podman system service`` on a
socket of its own.

Every component runs in the image through kfp.local's DockerRunner, which uses the Docker API, not
a mock. The containers run as the image's user and log to a real ``mlflow server`` on this machine,
which they reach over the host network. The run's artifacts are then opened and checked as in
tests/test_kubeflow_local.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import EXPORT_ON, RESHOT_COUNT
from kdpipe import __version__
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.data.sources import DEBIAN_FASHION_MNIST, MNIST_FILES
from kdpipe.kubeflow.image import IMAGE
from kdpipe.kubeflow.params import dump_params
from kdpipe_pipelines.distill_pipeline import COMPILED
from pipeline_artifacts import check_run, check_tracking

pytestmark = pytest.mark.image
REPO = Path(__file__).resolve().parents[2]
USER_ID = "10001"
COMPILERS = ("gcc", "cc", "g++", "c++", "clang", "make", "ld")


def _engine() -> list[str]:
    """The CLI that built the image: docker where a daemon answers, else podman with the project's settings."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0:
        return [docker]
    return ["bash", str(REPO / "scripts" / "podman.sh")]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_engine(), "run", "--rm", *args], capture_output=True, text=True, check=False, timeout=300)


def _inspect(template: str) -> str:
    done = subprocess.run(
        [*_engine(), "image", "inspect", "--format", template, IMAGE], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"no image {IMAGE}: run `make image` first ({done.stderr.strip()})"
    return done.stdout.strip()


def test_the_image_runs_as_its_user_with_the_package_version_its_data_and_no_compiler() -> None:
    size_mb = int(_inspect("{{.Size}}")) // 1_000_000
    print(f"image {IMAGE}: {size_mb:,} MB")
    assert _run("--entrypoint", "id", IMAGE, "-u").stdout.strip() == USER_ID
    version = _run(IMAGE, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"kdpipe {__version__}"
    found = _run("--entrypoint", "sh", IMAGE, "-c", f"for c in {' '.join(COMPILERS)}; do command -v $c; done; true")
    assert found.stdout.split() == [], f"compilers in the image: {found.stdout.split()}"
    data = _run("--entrypoint", "ls", IMAGE, str(DEBIAN_FASHION_MNIST)).stdout.split()
    assert sorted(data) == sorted(f"{name}.gz" for name in MNIST_FILES)
    writes = _run(
        "--entrypoint", "sh", IMAGE, "-c", "touch $HOME/probe && mkdir -p /tmp/outputs && touch /tmp/outputs/x"
    )
    assert writes.returncode == 0, writes.stderr


def test_the_image_label_names_the_reference_the_compiled_pipeline_runs() -> None:
    label = _inspect('{{index .Config.Labels "org.opencontainers.image.ref.name"}}')
    spec, _ = yaml.safe_load_all(COMPILED.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {label} == {IMAGE}


def test_every_component_starts_in_the_image_with_its_pipeline_command_line(tmp_path: Path) -> None:
    """Each executor's command from the compiled pipelines, nightly and study (what replaces the entrypoint on a
    cluster), with ``--help`` for its arguments: the shell, Python, kfp's executor and its argument parsing."""
    assert main(["study", "--kubeflow", "compile", "-o", str(tmp_path / "study.yaml")]) == 0
    executors = {}
    for package in (COMPILED, tmp_path / "study.yaml"):
        spec, *_ = yaml.safe_load_all(package.read_text())
        executors |= {f"{package.stem}/{name}": e for name, e in spec["deploymentSpec"]["executors"].items()}
    assert len(executors) >= 6 + 5
    for name, executor in executors.items():
        command = executor["container"]["command"]
        done = _run("--entrypoint", command[0], IMAGE, *command[1:], "--help")
        assert done.returncode == 0, f"{name}: exit {done.returncode}: {done.stderr[-2000:]}"
        assert "--executor_input" in done.stdout, name


def test_the_pipeline_runs_every_component_inside_the_image(
    make_params: Callable[..., Params],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reshot: Path,
    mlflow_server: str,
) -> None:
    assert os.environ.get("DOCKER_HOST") or _engine()[0].endswith("docker"), "run through scripts/image-check.sh"
    root = tmp_path / "kfp"
    shared = root / "operational" / "reshot"  # the containers see the pipeline root only
    shutil.copytree(reshot, shared)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)  # the image's user reads it
    params = make_params(
        data__root="data/raw",
        data__train_subset=1000,
        data__test_subset=500,
        data__val_size=200,
        train__epochs=2,
        train__batch_size=64,
        tracking__uri=mlflow_server,
        validate__operational=[{"name": "reshot", "source": str(shared)}],
        **EXPORT_ON,
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(dump_params(params))
    assert (
        main(["pipeline", "run-local", "--runner", "docker", "-c", str(params_file), "--pipeline-root", str(root)]) == 0
    )
    out = capsys.readouterr().out
    found = re.search(r"^artifacts of the run: (.+)$", out, re.MULTILINE)
    assert found, "run-local did not say where the run's artifacts are"
    run = Path(found.group(1))
    tasks = sorted(p.name for p in run.iterdir() if (p / "executor_output.json").exists())
    assert tasks == ["distill", "evaluate-teacher", "prepare-data", "promote", "teacher-outputs", "validate-student"], (
        out[-4000:]
    )  # kfp's DockerRunner can call a failed container a success
    owners = {p.stat().st_uid for p in run.rglob("executor_output.json")}
    assert owners == {int(USER_ID)}, f"the tasks wrote as uid {owners}, not the image's user"
    check_run(run, params, mlflow_server, RESHOT_COUNT)
    check_tracking(params)
    print(json.dumps({"tasks": tasks, "run": str(run)}))
