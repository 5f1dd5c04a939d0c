"""Hinton et al. 2015: match the teacher's softened logits, plus cross-entropy on labels.

loss = ce_w * CE(s, y) + kl_w * KL_T(t || s)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from kdpipe.distill.base import Distiller, kl_divergence
from kdpipe.models import FeatureClassifier


@dataclass(frozen=True)
class KDSettings:
    """The KL's temperature and the weights of its two parts; these defaults are ``method.kd``'s."""

    temperature: float = 16.0
    kl_weight: float = 0.5
    ce_weight: float = 0.5


class KD(Distiller):
    def __init__(self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: KDSettings = KDSettings()) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "kl": self.cfg.kl_weight * kl_divergence(s_logits, t_logits, self.cfg.temperature),
        }
