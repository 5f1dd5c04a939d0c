"""A trained classifier on disk: weights plus what is needed to rebuild and trust it.

Read back with ``torch.load(weights_only=True)``: only tensors and plain values are stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdpipe.errors import KdpipeError
from kdpipe.files import atomic_torch_save
from kdpipe.models import FeatureClassifier, create_model

MODEL_FILE = "model.pt"


def save_model(path: Path, model: FeatureClassifier, arch: str, classes: list[str], in_channels: int, **meta: Any) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(
        {"arch": arch, "classes": list(classes), "in_channels": in_channels, "state_dict": state, "meta": meta}, path
    )


def load_model(path: Path) -> tuple[FeatureClassifier, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns it in eval mode with its record."""
    if not path.exists():
        raise KdpipeError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = create_model(blob["arch"], len(blob["classes"]), blob["in_channels"])
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, ValueError, EOFError) as exc:
        raise KdpipeError(f"{path}: not a kdpipe model file or corrupt ({exc})") from None
    model.eval()
    return model, {k: v for k, v in blob.items() if k != "state_dict"}
