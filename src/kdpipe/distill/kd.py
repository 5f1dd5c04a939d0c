"""Hinton et al. 2015: match the teacher's softened logits, plus cross-entropy on labels."""

from __future__ import annotations

import torch.nn.functional as F

from kdpipe.config import KDConfig
from kdpipe.distill.base import Distiller, kl_divergence
from kdpipe.models import FeatureClassifier


class KD(Distiller):
    def __init__(self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: KDConfig) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "kl": self.cfg.kl_weight * kl_divergence(s_logits, t_logits, self.cfg.temperature),
        }
