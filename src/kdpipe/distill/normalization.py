"""Feature normalisation applied separately to projected student and to teacher features.

The recipe's default is BatchNorm without affine parameters (eps 1e-4): it whitens each dimension
over the batch, which keeps the projector from collapsing onto a trivial solution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class L2Rows(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm1d(dim, eps=1e-4, affine=False)
    if kind == "layernorm":
        return nn.LayerNorm(dim, elementwise_affine=False)
    if kind == "l2":
        return L2Rows()
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}")
