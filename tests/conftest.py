"""Shared fixtures: small but real Fashion-MNIST runs with every path inside a temporary directory.

Tests run torch with ``KDPIPE_TEST_THREADS`` threads (default 2, the CI machine's core count); ``make test``
runs them on two pytest-xdist workers with one thread each.

No test writes into the checkout: each test runs with a fresh temporary directory as its cwd, and the
session- and module-scoped fixtures with one of their own (MLflow puts a SQLite store's artifacts in
``./mlruns`` of the cwd, and kdpipe's default paths are relative); tests/worktree.py fails the session
when the work tree differs from the one the session started with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kdpipe.config import Params, params_from_dict

# Real MLflow and SeaweedFS servers (tests/servers.py), session-scoped, for the registry and S3 tests.
from servers import mlflow_server, seaweedfs  # noqa: F401
from worktree import WorktreeCheck

THREADS = int(os.environ.get("KDPIPE_TEST_THREADS", "2"))
torch.set_num_threads(THREADS)
REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = str(REPO / "params.yaml")  # the checkout's params, named: a test's cwd is not the checkout (_test_cwd)
RESHOT_COUNT = 120
EXPORT_ON = {
    "export__enabled": True,
    "validate__deploy_format": "onnx",
    "export__repeats": 20,
    "export__warmup": 2,
    "export__calibration_size": 128,
}  # make_params(**EXPORT_ON): the export, with short probes
TINY = {
    "data__train_subset": 400,
    "data__val_size": 80,
    "data__test_subset": 160,
    "train__batch_size": 64,
    "teacher__arch": "cnn8",
    "teacher__train__batch_size": 64,
}  # fmt: skip  (make_params(**TINY): a study run in seconds)


def write_example(out: Path, raw_root: Path, count: int, seed: int = 0) -> Path:
    """Run the shipped scripts/operational_example.py, as a user would, into ``out``."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "operational_example.py"),
            "--out",
            str(out),
            "--root",
            str(raw_root),
            "--count",
            str(count),
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def write_params(params: Params, path: Path) -> Path:
    """``params`` as the params.yaml a command line reads with ``-c``."""
    path.write_text(yaml.safe_dump(params.to_dict()))
    return path


def pytest_configure(config: pytest.Config) -> None:
    """The work-tree check (tests/worktree.py) in the process that sees the whole session: the only one, or
    pytest-xdist's controller."""
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(WorktreeCheck(REPO), "kdpipe-worktree-check")


@pytest.fixture(scope="session", autouse=True)
def _session_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session- and module-scoped fixtures run in a temporary directory, never in the checkout."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd-session"))
        yield


@pytest.fixture(autouse=True)
def _test_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in a fresh temporary directory (its own, not tmp_path, which it may list): whatever
    is written relative to the cwd lands there. That is where MLflow puts the artifacts of a SQLite
    store created without an artifact root (``./mlruns``: make_params' stores), and where subprocesses
    started without ``cwd`` run."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


@pytest.fixture(scope="session")
def raw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where torchvision's FashionMNIST layout is unpacked from Debian's files, once per session."""
    return tmp_path_factory.mktemp("raw")


@pytest.fixture(scope="session")
def reshot(tmp_path_factory: pytest.TempPathFactory, raw_root: Path) -> Path:
    """The example operational set (Fashion-MNIST test images re-photographed), written once per session."""
    return write_example(tmp_path_factory.mktemp("operational") / "reshot", raw_root, RESHOT_COUNT)


def make_params_for(tmp_path: Path, raw_root: Path, **overrides: Any) -> Params:
    """Params for a small real run: 2 000 training images, tiny epochs, all outputs under tmp_path; no ONNX
    export. ``overrides``: ``section__key=value``."""
    raw: dict[str, Any] = {
        "data": {"root": str(raw_root), "train_subset": 2000, "test_subset": 1000, "val_size": 500},
        "teacher": {"arch": "cnn16", "train": {"epochs": 1, "batch_size": 128}},
        "student": {"arch": "cnn8"},
        "train": {"epochs": 1, "batch_size": 128},
        "runtime": {"num_threads": THREADS, "progress": "off", "device": "cpu"},
        "validate": {"min_top1": 0.0, "max_teacher_gap": None, "max_latency_ms": None, "deploy_format": "pytorch"},
        "export": {"enabled": False},  # tests of the export turn it on (EXPORT_ON): it costs 5 probe processes
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}", "experiment": "tests"},
        "paths": {
            k: str(tmp_path / k)
            for k in ("prepared", "teacher", "student", "checkpoints", "validation", "promotion", "teacher_cache")
        },
    }
    for key, value in overrides.items():
        _set(raw, key.replace("__", "."), value)
    return params_from_dict(raw)


@pytest.fixture
def make_params(tmp_path: Path, raw_root: Path) -> Callable[..., Params]:
    """:func:`make_params_for` in this test's tmp_path."""
    return lambda **overrides: make_params_for(tmp_path, raw_root, **overrides)
