"""FitNets (Romero et al. 2015) on pooled features: a projector regressed onto the teacher by MSE.

loss = ce_w * CE(s, y) + feat_w * MSE(P(z_s), z_t)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from kdpipe.distill.base import Distiller
from kdpipe.distill.projector import make_projector
from kdpipe.models import FeatureClassifier


@dataclass(frozen=True)
class FitNetSettings:
    """The projector (by name; always a learned map from D_s to D_t, never ``none``) and the weights of the
    loss's two parts; these defaults are ``method.fitnet``'s."""

    projector: str = "linear"
    feat_weight: float = 10.0
    ce_weight: float = 0.5


class FitNet(Distiller):
    def __init__(
        self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: FitNetSettings = FitNetSettings()
    ) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg
        self.projector = make_projector(cfg.projector, student.feature_dim, teacher.feature_dim)

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "feat": self.cfg.feat_weight * F.mse_loss(self.projector(s_feats), t_feats.detach()),
        }
