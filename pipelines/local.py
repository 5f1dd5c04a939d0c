"""A pipeline on this machine through kfp.local: every component a subprocess of this Python.

Nothing is installed at run time (``use_venv=False``): the components import kdpipe from the
environment that runs this, exactly as they import it from the image on a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_local(pipeline: Any, pipeline_root: Path, arguments: dict[str, Any]) -> Path:
    """Run ``pipeline`` (a built ``@dsl.pipeline``); returns the run's directory (one folder of artifacts per task)."""
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    pipeline(**arguments)
    (run_dir,) = set(pipeline_root.iterdir()) - before
    return run_dir
