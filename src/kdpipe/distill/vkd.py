"""VkD (Miles, Elezi & Deng, CVPR 2024): the recipe's successor, an orthogonal projector and a task-specific
normalisation of the teacher's features only.

loss = ce_w * CE(s, y) + kl_w * KL_T(t || s) + feat_w * SmoothL1(W z_s, LN(z_t)),
W a bias-free (semi-)orthogonal D_t x D_s map (torch's orthogonal parametrisation), LN a layer norm without
affine parameters (each teacher feature vector standardised: classification's normalisation in the paper), the
student's side left unnormalised, SmoothL1 with beta 1 averaged over batch and dims. Official code: roymiles/vkd,
``train.py`` (the projector) and ``engine.py`` (the loss, there on DeiT's distillation token, here on pooled
features); alpha = gamma = 1 and T = 1 are its defaults.
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
class VKDSettings:
    """The weights of the loss's three parts and the KL's temperature; these defaults are ``method.vkd``'s."""

    feat_weight: float = 4.0
    kl_weight: float = 0.5
    ce_weight: float = 0.5
    temperature: float = 1.0


class VKD(Distiller):
    def __init__(
        self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: VKDSettings = VKDSettings()
    ) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg
        self.projector = make_projector("orthogonal", student.feature_dim, teacher.feature_dim)
        self.norm_teacher = make_norm("layernorm", teacher.feature_dim)
        self.distance = make_distance("smooth_l1")

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        z_t: torch.Tensor = self.norm_teacher(t_feats.detach())
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "kl": self.cfg.kl_weight * kl_divergence(s_logits, t_logits.detach(), self.cfg.temperature),
            "feat": self.cfg.feat_weight * self.distance(self.projector(s_feats), z_t),
        }
