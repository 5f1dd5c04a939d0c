"""The Dockerfile, checked without Docker (which cannot run here): what it installs, who it runs as,
which image reference it builds, and hadolint's verdict (the linter ships in requirements.lock)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from kdpipe import __version__
from kdpipe.kubeflow.image import IMAGE
from kdpipe_pipelines.distill_pipeline import COMPILED

REPO = Path(__file__).resolve().parents[1]
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|clang|cmake|git)\b")


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    args: str


def _instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, each tagged with its stage."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out, stage = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args
        out.append(Instruction(stage, keyword.upper(), " ".join(args.split())))
    return out


def _stages() -> list[str]:
    return [i.stage for i in _instructions() if i.keyword == "FROM"]


def _final(keyword: str) -> list[str]:
    final = _stages()[-1]
    return [i.args for i in _instructions() if i.stage == final and i.keyword == keyword]


def test_image_installs_the_same_lock_file_as_the_readme_setup() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet -r requirements.lock" in makefile
    assert "make demo" in (REPO / "README.md").read_text()
    runs = [i.args for i in _instructions() if i.keyword == "RUN"]
    assert any("pip install --no-cache-dir -r requirements.lock" in r for r in runs)
    assert "requirements.lock ./" in [i.args for i in _instructions() if i.keyword == "COPY"]
    assert any("--no-deps ." in r for r in runs)  # the project itself adds no unpinned dependency


def test_multi_stage_with_no_build_tools_a_non_root_user_and_kdpipe_as_entrypoint() -> None:
    stages = _stages()
    assert len(stages) == 2 and stages[-1] == "runtime"
    assert any(BUILD_TOOLS.search(i.args) for i in _instructions() if i.stage == "build" and i.keyword == "RUN")
    for run in _final("RUN"):
        assert not BUILD_TOOLS.search(run), run
    assert _final("COPY") == ["--from=build /opt/kdpipe /opt/kdpipe"]
    (user,) = _final("USER")
    assert user not in ("root", "0")
    assert any(f"--uid {user}" in run for run in _final("RUN"))
    assert _final("ENTRYPOINT") == ['["kdpipe"]']
    base = {i.args for i in _instructions() if i.keyword == "FROM"}
    assert base == {"${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"}
    assert any("torch==" in line for line in (REPO / "requirements.lock").read_text().splitlines())
    assert any(line.startswith("nvidia-cudnn") for line in (REPO / "requirements.lock").read_text().splitlines())


def test_the_pipeline_runs_the_image_this_dockerfile_builds() -> None:
    (arg,) = [i.args for i in _instructions() if i.keyword == "ARG" and i.args.startswith("IMAGE=")]
    assert arg == f"IMAGE={IMAGE}"
    assert IMAGE.endswith(f":{__version__}")
    assert 'org.opencontainers.image.ref.name="${IMAGE}"' in " ".join(_final("LABEL"))
    spec, _ = yaml.safe_load_all(COMPILED.read_text())
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {IMAGE}
    image_target = (REPO / "Makefile").read_text().split("\nimage:")[1].split("\n\n")[0]
    assert "bash scripts/build-image.sh" in image_target
    script = (REPO / "scripts" / "build-image.sh").read_text()
    assert "REF=$(.venv/bin/kdpipe pipeline image)" in script
    builds = [line for line in script.splitlines() if " build " in line and not line.startswith("#")]  # docker, podman
    assert len(builds) == 2 and all('--build-arg IMAGE="$REF"' in line for line in builds)
    assert script.count('-t "$REF"') == 2
    printed = subprocess.run(
        [sys.executable, "-m", "kdpipe.cli", "pipeline", "image"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert printed == IMAGE


def test_build_context_keeps_what_the_dockerfile_copies_and_nothing_heavy() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", "artifacts", "mlruns.db"} <= ignored
    for copy in (i.args for i in _instructions() if i.keyword == "COPY" and not i.args.startswith("--from")):
        for source in shlex.split(copy)[:-1]:
            assert source not in ignored and (REPO / source).exists(), source


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
