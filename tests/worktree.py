"""The session leaves the checkout as it found it: a pytest plugin that fails the session otherwise.

Why: a test that writes into the checkout, e.g. MLflow run artifacts that land in ./mlruns because the SQLite
store was created with the cwd at the repository root, leaves files that no tracking store lists, that the next
run may read back, and that nobody notices because .gitignore hides them. So the snapshot is of the files
themselves, ignored ones included (mlruns/, artifacts/, mlartifacts/, .dvc/tmp, data/ ...), with the mtime and
size of each; only caches (__pycache__, .pytest_cache, .ruff_cache), .git and .venv are left out.

The check is the session's, not a test's: with pytest-xdist the tests run on several workers at once, and only
the controlling process sees the session start before every test and end after all of them. An edit made in the
checkout while the tests run is reported too: the check cannot tell who wrote a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# What the snapshot leaves out: caches Python, pytest and ruff keep by design, git's own database and the
# virtualenv (at the top only: a new one deeper down is a leak).
CACHE_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}
TOP_SKIPPED = {".git", ".venv"}

State = dict[str, tuple[int, int] | None]


def worktree_state(root: Path) -> State:
    """Every path under ``root``, ignored ones included: (mtime_ns, size) for a file or link, None for a folder;
    caches, .git and .venv left out."""
    state: State = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in CACHE_NAMES and not (here == root and d in TOP_SKIPPED)]
        for d in dirs:
            state[str((here / d).relative_to(root))] = None
        for f in files:
            if f.endswith(".pyc"):
                continue
            path = here / f
            try:
                st = path.lstat()
            except FileNotFoundError:  # removed while walking
                continue
            state[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size)
    return state


def changes(before: State, after: State) -> list[str]:
    """One line per path new, changed or removed between the two snapshots."""
    new = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    lines = [f"  new      {p}" for p in new] + [f"  changed  {p}" for p in changed]
    return lines + [f"  removed  {p}" for p in removed]


class WorktreeCheck:
    """Snapshots ``root`` when the session starts and fails the session if it differs when the session ends.
    Register it in the controlling process only (not in an xdist worker)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before: State = {}

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.before = worktree_state(self.root)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        lines = changes(self.before, worktree_state(self.root))
        if not lines:
            return
        report = f"the test session changed {len(lines)} path(s) in {self.root}:\n" + "\n".join(lines)
        terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.write_line(report, red=True)
        else:
            print(report)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
