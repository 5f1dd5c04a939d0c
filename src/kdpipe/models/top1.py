"""Top-1 accuracy, defined once for every figure kdpipe reports.

A prediction is a hit when the class of its largest logit is the label (:func:`hits`). A whole set of
logits is scored with :func:`top1`: validation, the export's fp32 and int8 figures, the corruption suite
and the study's runs and teachers, through :mod:`kdpipe.evaluation.metrics` and :mod:`kdpipe.deploy.int8`.
The training loop counts hits batch by batch on the device instead (``train_acc`` and ``val_acc``,
:func:`kdpipe.training.loop.accuracy`), so that no logits leave it.
"""

from __future__ import annotations

import torch


def hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Which predictions are right: one bool per sample, True where the top-1 class is the label."""
    return logits.argmax(1) == labels


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of right predictions among ``logits`` (N x classes) for ``labels`` (N)."""
    return float(hits(logits, labels).float().mean())
