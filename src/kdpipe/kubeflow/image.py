"""The one place that names the container image every Kubeflow component runs in.

The Dockerfile builds this reference (``make image``); a test checks that the Dockerfile, the
Makefile and the compiled pipeline agree with it.
"""

from kdpipe import __version__

IMAGE_REPOSITORY = "ghcr.io/kdpipe/kdpipe"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
