"""What every run and registered version says about where it came from: kdpipe's version, its git
commit, the teacher source and the pipeline run.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from kdpipe import __version__
from kdpipe.config import Params
from kdpipe.tracking import tags, ui_links

GIT_COMMIT_ENV = "KDPIPE_GIT_COMMIT"


@functools.cache
def git_commit() -> str:
    """The commit of kdpipe's source: ``KDPIPE_GIT_COMMIT`` (set in images), else git, else 'unknown'."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def lineage_tags(params: Params) -> dict[str, str]:
    """What every run and registered version says about where it came from."""
    return {
        tags.PIPELINE_RUN_ID: str(params.tracking.pipeline_run_id),
        tags.VERSION: __version__,
        tags.GIT_COMMIT: git_commit(),
        tags.TEACHER_SOURCE: params.teacher.source,
        **ui_links.kubeflow_run(params),
    }
