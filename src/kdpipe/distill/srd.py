"""The simple recipe (Miles & Mikolajczyk, AAAI 2024): projector, non-affine BatchNorm, LogSum.

loss = ce_w * CE(s, y) + kl_w * KL_T(t || s) + feat_w * d(norm_s(P(z_s)), norm_t(z_t))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdpipe.distill.base import Distiller, kl_divergence
from kdpipe.distill.distance import make_distance
from kdpipe.distill.normalization import make_norm
from kdpipe.distill.projector import make_projector
from kdpipe.models import FeatureClassifier


@dataclass(frozen=True)
class SRDSettings:
    """The three switches (``projector``, ``norm``, ``distance``, by name in their tables), LogSum's exponent
    ``alpha``, the weights of the loss's three parts and the KL's temperature; ``train_projector`` false freezes
    a random projector (an ablation). These defaults are ``method.srd``'s: the schema reads them from here."""

    projector: str = "linear"
    train_projector: bool = True
    norm: str = "bn"
    distance: str = "logsum"
    alpha: float = 4.0
    feat_weight: float = 0.5
    kl_weight: float = 0.9
    ce_weight: float = 0.1
    temperature: float = 1.0


class SRD(Distiller):
    def __init__(
        self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: SRDSettings = SRDSettings()
    ) -> None:
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
