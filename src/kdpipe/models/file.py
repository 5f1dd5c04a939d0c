"""A trained classifier on disk: weights plus what is needed to rebuild and trust it.

Read back with ``torch.load(weights_only=True)``: only tensors and plain values are stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdpipe.infra.errors import ForeignFileError, KdpipeError
from kdpipe.infra.files import atomic_torch_save, load_checkpoint
from kdpipe.models import FeatureClassifier, create_model

MODEL_FILE = "model.pt"


def save_model(
    path: Path, model: FeatureClassifier, arch: str, classes: list[str], in_channels: int, **meta: Any
) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    sized = {} if model.image_size is None else {"image_size": model.image_size}
    atomic_torch_save(
        {
            "arch": arch,
            "classes": list(classes),
            "in_channels": in_channels,
            **sized,
            "state_dict": state,
            "meta": meta,
        },
        path,
    )


def load_model(path: Path, trained_on: str | None = None) -> tuple[FeatureClassifier, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns it in eval mode with its record.

    ``trained_on``: the data sha256 the model must have been trained on (a student read by a later step).
    """
    if not path.exists():
        raise KdpipeError(f"{path}: model file not found")
    blob = load_checkpoint(path)
    try:
        model = create_model(blob["arch"], len(blob["classes"]), blob["in_channels"], blob.get("image_size"))
        model.load_state_dict(blob["state_dict"])
    except KeyError as exc:
        raise ForeignFileError(f"{path}: not a kdpipe model file (no {exc} entry)") from None
    except (RuntimeError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ForeignFileError(f"{path}: not a kdpipe model file or corrupt ({reason})") from None
    recorded = blob.get("meta", {}).get("data_sha256")
    if trained_on is not None and recorded != trained_on:
        raise KdpipeError(
            f"{path}: trained on data {str(recorded)[:12]}, but the prepared data is {trained_on[:12]}; rerun distill"
        )
    model.eval()
    return model, {k: v for k, v in blob.items() if k != "state_dict"}
