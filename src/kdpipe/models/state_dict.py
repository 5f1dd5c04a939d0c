"""State dicts as training scripts save them, for teachers and students alike: nested under ``state_dict`` or
``model`` (checkpoints with an optimiser beside the weights, kdpipe's model file), and saved from DDP or
torch.compile (``module.``, ``_orig_mod.`` in front of every name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

NESTED_KEYS = ("state_dict", "model")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel's and torch.compile's wrappers


def unnested(blob: Any) -> Any:
    """The innermost mapping under ``state_dict``/``model`` keys; ``blob`` itself when it nests nothing."""
    while isinstance(blob, Mapping):
        nested = next((blob[k] for k in NESTED_KEYS if isinstance(blob.get(k), Mapping)), None)
        if nested is None:
            break
        blob = nested
    return blob


def unprefixed(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The names without a wrapper's prefix that every one of them carries."""
    for prefix in STRIPPED_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)
