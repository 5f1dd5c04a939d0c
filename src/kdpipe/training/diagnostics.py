"""Signals of a distillation run's health that the loss does not show.

The projector's effective rank (Roy & Vetterli 2007) is measured on the projected student features
of a fixed validation batch: ``exp(H(p))`` where ``p`` are the singular values of the centred
``N x D_t`` feature matrix normalised to sum to one. It stays near the feature dimension while the
projector spreads information over many directions and falls towards 1 when it collapses, which the
paper's BatchNorm on both sides is there to prevent. Features rather than weights, because what the
loss sees is the projected features, and because an MLP projector has no single weight matrix.
"""

from __future__ import annotations

import torch
from torch import nn

RANK_BATCH = 512


def effective_rank(matrix: torch.Tensor) -> float:
    """exp of the Shannon entropy of the normalised singular values of the centred matrix."""
    x = matrix.detach().double()
    x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def projector_effective_rank(student: nn.Module, projector: nn.Module, images: torch.Tensor) -> float:
    """Effective rank of ``projector(student.features(images))`` in eval mode; modes are restored."""
    modes = (student.training, projector.training)
    student.eval()
    projector.eval()
    try:
        return effective_rank(projector(student.features(images)).float())
    finally:
        student.train(modes[0])
        projector.train(modes[1])
