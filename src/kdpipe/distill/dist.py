"""DIST (Huang et al., NeurIPS 2022): match the teacher's relations, not its probabilities, by Pearson correlation.

With y = softmax(z / tau), rows are samples and columns classes:
  inter = 1 - mean over samples i of rho(y_s[i, :], y_t[i, :])   (each sample's ranking of the classes)
  intra = 1 - mean over classes c of rho(y_s[:, c], y_t[:, c])   (each class's ranking of the samples)
loss = ce_w * CE(s, y) + tau^2 * (beta * inter + gamma * intra), rho the Pearson correlation
(x - mean) . (y - mean) / (|x - mean| |y - mean| + 1e-8). Official code: hunto/image_classification_sota
``lib/models/losses/dist_kd.py``; its CIFAR strategy (``dist_cifar.yaml``: ``kd: dist_t4``, KD weight 2) is these
defaults, the KD weight folded into beta and gamma. Intra-class relations need a batch of at least 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdpipe.distill.base import Distiller
from kdpipe.models import FeatureClassifier

EPS = 1e-8


@dataclass(frozen=True)
class DISTSettings:
    """The inter- and intra-class weights, the softmax temperature and the CE weight; these defaults are
    ``method.dist``'s."""

    inter_weight: float = 0.5
    intra_weight: float = 0.5
    temperature: float = 1.0
    ce_weight: float = 1.0


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson's correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + EPS)


def relations(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, ...]:
    """(inter, intra) of the docstring, each scaled by tau^2."""
    y_s = F.softmax(student_logits / tau, dim=1)
    y_t = F.softmax(teacher_logits / tau, dim=1)
    inter = 1 - pearson_rows(y_s, y_t).mean()
    intra = 1 - pearson_rows(y_s.T, y_t.T).mean()
    return inter * tau**2, intra * tau**2


class DIST(Distiller):
    def __init__(
        self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: DISTSettings = DISTSettings()
    ) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        inter, intra = relations(s_logits, t_logits.detach(), self.cfg.temperature)
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "inter": self.cfg.inter_weight * inter,
            "intra": self.cfg.intra_weight * intra,
        }
