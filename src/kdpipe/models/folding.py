"""The model as evaluation runs it: each BatchNorm folded into the layer before it.

In eval mode a BatchNorm is an affine map, so it folds into the weights of the convolution (or
linear layer) feeding it: ``w' = w * g / sqrt(v + eps)`` and ``b' = (b - m) * g / sqrt(v + eps) + beta``
(Ioffe & Szegedy, ICML 2015, section 3.2; it is also what an ONNX export does). The folded model
computes the same function up to float rounding and runs one kernel where training ran two:
``benchmarks/eval.py`` measures what that buys.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

log = logging.getLogger("kdpipe")


def _channels_last(model: nn.Module) -> bool:
    return any(
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in model.parameters()
    )


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with its BatchNorms folded, in the model's memory format; the original
    is untouched. A model that torch.fx cannot trace (data-dependent control flow) is copied unfolded."""
    frozen = copy.deepcopy(model).eval()
    try:
        folded = fuse(frozen, inplace=True)
    except Exception as exc:  # torch.fx raises whatever the traced code does on a Proxy
        log.debug("evaluating %s unfolded: torch.fx cannot trace it (%s)", type(model).__name__, exc)
        return frozen
    return folded.to(memory_format=torch.channels_last) if _channels_last(model) else folded
