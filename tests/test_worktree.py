"""The work-tree check (tests/worktree.py) sees what a session wrote, and fails the session for it, on one
process or on pytest-xdist workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worktree import changes, worktree_state

TESTS = Path(__file__).resolve().parent

INNER_CONFTEST = """
from pathlib import Path

from worktree import WorktreeCheck


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(WorktreeCheck(Path(__file__).parent))
"""

INNER_TESTS = """
from pathlib import Path


def test_one():
    pass


def test_two():
    {body}
"""


def test_a_snapshot_diff_names_each_new_changed_and_removed_path_and_skips_caches(tmp_path: Path) -> None:
    for name in ("kept.txt", "changed.txt", "removed.txt", ".git/HEAD", "sub/.venv/leak"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    before = worktree_state(tmp_path)
    (tmp_path / "changed.txt").write_text("longer")
    (tmp_path / "removed.txt").unlink()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "file").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_text("x")
    (tmp_path / ".git" / "index").write_text("x")
    (tmp_path / "sub" / ".venv" / "leak").write_text("longer")  # .venv is skipped at the top only
    assert changes(before, worktree_state(tmp_path)) == [
        "  new      new",
        "  new      new/file",
        "  changed  changed.txt",
        "  changed  sub/.venv/leak",
        "  removed  removed.txt",
    ]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "two xdist workers"])
@pytest.mark.parametrize("writes", [False, True])
def test_a_session_whose_test_writes_into_the_checked_folder_fails_and_names_the_path(
    tmp_path: Path, workers: list[str], writes: bool
) -> None:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    body = 'Path(__file__).with_name("leak.txt").write_text("x")' if writes else "pass"
    (tmp_path / "test_inner.py").write_text(INNER_TESTS.format(body=body))
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, str(tmp_path)]
    run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "2 passed" in run.stdout, run.stdout + run.stderr
    if writes:
        assert run.returncode == 1, run.stdout
        assert f"the test session changed 1 path(s) in {tmp_path}:\n  new      leak.txt" in run.stdout
    else:
        assert run.returncode == 0, run.stdout
