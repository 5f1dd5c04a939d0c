"""A real git repository with DVC initialised, for the tests that read data at a DVC revision (``dvc+...``)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DVC = str(Path(sys.executable).with_name("dvc"))  # the project's own, beside this interpreter


@dataclass(frozen=True)
class DvcRepo:
    root: Path

    def run(self, *cmd: str) -> str:
        """``cmd`` in the repository (``dvc`` is the project's); its stdout."""
        argv = (DVC, *cmd[1:]) if cmd[0] == "dvc" else cmd
        return subprocess.run(argv, cwd=self.root, check=True, capture_output=True, text=True).stdout.strip()

    def version(self, path: str, message: str) -> str:
        """``dvc add`` ``path`` and commit it; the revision."""
        self.run("dvc", "add", "-q", path)
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)
        return self.run("git", "rev-parse", "HEAD")


def dvc_repo(root: Path) -> DvcRepo:
    """``root`` made a git repository with DVC initialised."""
    root.mkdir(parents=True)
    repo = DvcRepo(root)
    repo.run("git", "init", "-q")
    repo.run("git", "config", "user.email", "ci@example.org")
    repo.run("git", "config", "user.name", "ci")
    repo.run("dvc", "init", "-q")
    return repo
