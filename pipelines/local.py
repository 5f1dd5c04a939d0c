"""A pipeline on this machine through kfp.local: every component a subprocess of this Python, or a
container of the project's image.

``subprocess``: nothing is installed at run time (``use_venv=False``); the components import kdpipe
from the environment that runs this, exactly as they import it from the image on a cluster.

``docker``: each component runs in the image its spec names, through the Docker API at
``DOCKER_HOST`` (a Docker daemon, or ``podman system service``), as on a cluster: the spec's command
replaces the image's entrypoint, the image's user (uid 10001) runs it, and the host network lets it
reach an MLflow server or S3 endpoint on this machine. The pipeline root is bind-mounted at the same
path, so its directories are made writable for that user.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdpipe.infra.errors import KdpipeError

RUNNERS = ("subprocess", "docker")


@contextlib.contextmanager
def _shared_directories() -> Iterator[None]:
    """Directories this process makes while the containers run are writable by their user too."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def run_local(pipeline: Any, pipeline_root: Path, arguments: dict[str, Any], runner: str = "subprocess") -> Path:
    """Run ``pipeline`` (a built ``@dsl.pipeline``); returns the run's directory (one folder of artifacts per task)."""
    from kfp import local

    pipeline_root = pipeline_root.resolve()  # the docker runner mounts it at the same absolute path
    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    if runner == "docker":
        pipeline_root.chmod(0o777)
        how = local.DockerRunner(network_mode="host", entrypoint=[""])  # [""] clears it; [] keeps `kdpipe`
        scope = _shared_directories()
    else:
        how, scope = local.SubprocessRunner(use_venv=False), contextlib.nullcontext()
    local.init(runner=how, pipeline_root=str(pipeline_root), raise_on_error=True)
    with scope:
        try:
            pipeline(**arguments)
        except RuntimeError as exc:  # kfp.local's word for a failed task; the tasks' own logs are above
            raise KdpipeError(
                f"the local run failed: {str(exc).splitlines()[0]} (artifacts under {pipeline_root})"
            ) from None
    (run_dir,) = set(pipeline_root.iterdir()) - before
    return run_dir
