"""Distances between normalised student and teacher features."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def make_distance(kind: str, alpha: float = 4.0) -> Distance:
    if kind == "logsum":
        return logsum(alpha)
    if kind == "mse":
        return F.mse_loss
    if kind == "l1":
        return F.l1_loss
    if kind == "cosine":
        return cosine
    raise ValueError(f"unknown distance {kind!r}")
