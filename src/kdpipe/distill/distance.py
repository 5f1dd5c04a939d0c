"""Distances between normalised student and teacher features."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from kdpipe.infra.factories import Factories

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# log(0) is -inf; the sum is clamped here, far below any sum a real batch produces.
LOGSUM_FLOOR = 1e-12


def logsum(alpha: float) -> Distance:
    """``log(sum over batch and dims of |a - b|^alpha)``: a soft maximum of the per-element gaps."""

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.log((a - b).abs().pow(alpha).sum().clamp_min(LOGSUM_FLOOR))

    return distance


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(a, b, dim=1)).mean()


DISTANCES: Factories[Distance] = Factories(
    "distance",
    {
        "logsum": logsum,
        "mse": lambda alpha: F.mse_loss,
        "l1": lambda alpha: F.l1_loss,
        "smooth_l1": lambda alpha: F.smooth_l1_loss,
        "cosine": lambda alpha: cosine,
    },
)


def make_distance(kind: str, alpha: float = 4.0) -> Distance:
    """``alpha`` is the LogSum exponent; the other distances ignore it."""
    return DISTANCES.create(kind, alpha)
