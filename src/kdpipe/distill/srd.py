"""The simple recipe (Miles & Mikolajczyk, AAAI 2024): projector, non-affine BatchNorm, LogSum.

loss = ce_w * CE(s, y) + kl_w * KL_T(t || s) + feat_w * d(norm_s(P(z_s)), norm_t(z_t))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdpipe.config import SRDConfig
from kdpipe.distill.base import Distiller, kl_divergence
from kdpipe.distill.distance import make_distance
from kdpipe.distill.normalization import make_norm
from kdpipe.distill.projector import make_projector
from kdpipe.models import FeatureClassifier


class SRD(Distiller):
    def __init__(self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: SRDConfig) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg
        self.projector = make_projector(cfg.projector, student.feature_dim, teacher.feature_dim)
        self.projector.requires_grad_(cfg.train_projector)
        self.norm_student = make_norm(cfg.norm, teacher.feature_dim)
        self.norm_teacher = make_norm(cfg.norm, teacher.feature_dim)
        self.distance = make_distance(cfg.distance, cfg.alpha)

    def project(self, s_feats: torch.Tensor) -> torch.Tensor:
        return self.projector(s_feats)

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        z_s = self.norm_student(self.project(s_feats))
        z_t = self.norm_teacher(t_feats.detach())
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "kl": self.cfg.kl_weight * kl_divergence(s_logits, t_logits.detach(), self.cfg.temperature),
            "feat": self.cfg.feat_weight * self.distance(z_s, z_t),
        }
