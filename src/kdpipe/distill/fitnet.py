"""FitNets (Romero et al. 2015) on pooled features: a projector regressed onto the teacher by MSE."""

from __future__ import annotations

import torch.nn.functional as F

from kdpipe.config import FitNetConfig
from kdpipe.distill.base import Distiller
from kdpipe.distill.projector import make_projector
from kdpipe.models import FeatureClassifier


class FitNet(Distiller):
    def __init__(self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: FitNetConfig) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg
        self.projector = make_projector(cfg.projector, student.feature_dim, teacher.feature_dim)

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "feat": self.cfg.feat_weight * F.mse_loss(self.projector(s_feats), t_feats.detach()),
        }
