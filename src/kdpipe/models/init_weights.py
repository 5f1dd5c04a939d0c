"""A model's starting weights from someone else's file: every tensor whose name and shape match is loaded.

A student starts from pretrained weights (``student.init``) that were saved by other code: a plain state dict, one
nested under ``state_dict`` or ``model`` (training scripts' checkpoints, kdpipe's model file), saved from DDP or
torch.compile (``module.``, ``_orig_mod.`` in front of every name), a timm checkpoint without kdpipe's wrapper
name (``net.``) or a safetensors file. Names are aligned once for the whole file (the prefix that matches most),
never guessed tensor by tensor; what does not match (the classifier, when the class count differs) keeps its fresh
initialisation, and the report says which is which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdpipe.infra.errors import ForeignFileError
from kdpipe.infra.files import load_tensors
from kdpipe.models.state_dict import unnested, unprefixed


@dataclass(frozen=True)
class InitReport:
    """Which of the model's tensors came from the file, which stayed new, and the file's tensors left unused."""

    loaded: tuple[str, ...]
    new: tuple[str, ...]
    unused: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"loaded": list(self.loaded), "new": list(self.new), "unused": list(self.unused)}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (torch's ``weights_only`` load, or safetensors), unwrapped and unprefixed."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return unprefixed(load_file(str(path)))
        except (SafetensorError, OSError) as exc:
            raise ForeignFileError(f"{path}: not a safetensors file ({str(exc).splitlines()[0][:200]})") from None
    blob = unnested(load_tensors(path))
    if not isinstance(blob, Mapping):
        raise ForeignFileError(f"{path}: holds a {type(blob).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in blob.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ForeignFileError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(blob)[:6]))})")
    return unprefixed(tensors)


def _matches(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, str]:
    """The model's names -> the file's, for the tensors whose name (with ``prefix`` put in front) and shape agree."""
    return {
        prefix + name: name
        for name, tensor in state.items()
        if prefix + name in own and own[prefix + name].shape == tensor.shape
    }


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> InitReport:
    """Copy every tensor of ``state`` whose name and shape match into ``model``; none matching is an error.

    The file's names may lack the wrapper's first component (``net.`` of a timm model, ``body.`` of a torchvision
    one): the prefix (none, or one of the model's first components) that matches most tensors is used.
    """
    own = model.state_dict()
    prefixes = ["", *dict.fromkeys(name.split(".")[0] + "." for name in own if "." in name)]
    matched = max((_matches(own, state, p) for p in prefixes), key=len)
    if not matched:
        sample = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state.items())[:3])
        raise ForeignFileError(
            f"{where}: none of its {len(state)} tensors matches a tensor of the model by name and shape "
            f"(the file has {sample}; the model has {', '.join(list(own)[:3])})"
        )
    with torch.no_grad():
        for name, source in matched.items():
            own[name].copy_(state[source])
    used = set(matched.values())
    return InitReport(
        loaded=tuple(n for n in own if n in matched),
        new=tuple(n for n in own if n not in matched),
        unused=tuple(n for n in state if n not in used),
    )
