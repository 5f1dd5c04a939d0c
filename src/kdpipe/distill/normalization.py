"""Feature normalisation applied separately to projected student and to teacher features.

The recipe's default is BatchNorm without affine parameters (eps 1e-4): it whitens each dimension
over the batch, which keeps the projector from collapsing onto a trivial solution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdpipe.infra.factories import Factories


class L2Rows(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


NORMS: Factories[nn.Module] = Factories(
    "norm",
    {
        "bn": lambda dim: nn.BatchNorm1d(dim, eps=1e-4, affine=False),
        "layernorm": lambda dim: nn.LayerNorm(dim, elementwise_affine=False),
        "l2": lambda dim: L2Rows(),
        "none": lambda dim: nn.Identity(),
    },
)


def make_norm(kind: str, dim: int) -> nn.Module:
    return NORMS.create(kind, dim)
