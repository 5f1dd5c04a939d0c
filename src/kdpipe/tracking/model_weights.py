"""The weights an MLflow model holds (``models:/...`` or ``runs:/...``), downloaded as one file.

A student may start from a model someone registered (``student.init``): kdpipe's own logged models carry their
weights as ``extra_files/model.pt``; another model's artifacts must hold exactly one weights file. Loading is left
to the caller, which reads tensors only: a pickled module is refused there, never run.
"""

from __future__ import annotations

from pathlib import Path

from kdpipe.infra.errors import KdpipeError
from kdpipe.models.file import MODEL_FILE
from kdpipe.tracking import registry

URI_SCHEMES = ("models:/", "runs:/")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def is_model_uri(text: str) -> bool:
    return text.startswith(URI_SCHEMES)


def download_weights(uri: str, tracking_uri: str, dst: Path) -> Path:
    """The weights file of the model ``uri`` names, downloaded under ``dst``; a one-line error says what is missing."""
    try:
        if uri.startswith("models:/"):
            local = registry.fetch_model(registry.client(tracking_uri), uri, dst)[0]
        else:
            local = registry.fetch_run_model(tracking_uri, uri, dst)
    except KdpipeError:
        raise
    except Exception as exc:  # MLflow raises its own and the stores' error types
        raise KdpipeError(f"{uri}: cannot download its artifacts ({str(exc).strip().splitlines()[0][:200]})") from None
    return _weights_file(local, uri)


def _weights_file(local: Path, uri: str) -> Path:
    if local.is_file():
        return local
    kdpipe_file = local / "extra_files" / MODEL_FILE
    if kdpipe_file.is_file():
        return kdpipe_file
    found = sorted(p for p in local.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if len(found) != 1:
        names = ", ".join(str(p.relative_to(local)) for p in found) or "none"
        raise KdpipeError(
            f"{uri}: expected one weights file ({', '.join(WEIGHT_SUFFIXES)}) among its artifacts, found {names}"
        )
    return found[0]
