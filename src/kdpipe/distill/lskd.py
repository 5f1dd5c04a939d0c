"""Logit standardisation (Sun et al., CVPR 2024): KD on z-scored logits, so the student matches the teacher's
ranking and relative gaps, not its logit range.

loss = ce_w * CE(s, y) + kl_w * KL_T(Z(t) || Z(s)),  Z(z) = (z - mean(z)) / (std(z) + 1e-7)  per sample,
with the sample standard deviation (n - 1), as in the official code, sunshangquan/logit-standardization-KD
``mdistiller/distillers/KD.py`` (``normalize``, ``kd_loss``). Each sample in effect gets its own temperature,
T * std(z), and the student no longer has to reach the teacher's logit magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdpipe.distill.base import Distiller, kl_divergence
from kdpipe.models import FeatureClassifier

EPS = 1e-7


@dataclass(frozen=True)
class LSKDSettings:
    """The KL's temperature (applied after standardising) and the two weights; these defaults are ``method.lskd``'s,
    chosen on val by ``kdpipe study --tune`` (docs: results/changes.md); the official CIFAR-100 ones are
    ``--base-temp 2 --kd-weight 9`` with CE weight 0.1."""

    temperature: float = 1.0
    kl_weight: float = 0.5
    ce_weight: float = 0.5


def standardise(logits: torch.Tensor) -> torch.Tensor:
    """Each row's z-score: zero mean, unit sample standard deviation."""
    centred = logits - logits.mean(dim=1, keepdim=True)
    return centred / (logits.std(dim=1, keepdim=True) + EPS)


class LSKD(Distiller):
    def __init__(
        self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: LSKDSettings = LSKDSettings()
    ) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        kl = kl_divergence(standardise(s_logits), standardise(t_logits.detach()), self.cfg.temperature)
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "kl": self.cfg.kl_weight * kl,
        }
