"""Decoupled KD (Zhao et al., CVPR 2022): the KL split into a target part and a non-target part, weighted apart.

loss = ce_w * CE(s, y) + alpha * TCKD + beta * NCKD, with, at temperature T and p = softmax(z / T):
  TCKD = T^2 * KL([p_t[y], 1 - p_t[y]] || [p_s[y], 1 - p_s[y]])    (target against the rest, a binary KL)
  NCKD = T^2 * KL(softmax(t_{-y} / T) || softmax(s_{-y} / T))      (over the K - 1 other classes only)
both averaged over the batch. Classic KD is TCKD + (1 - p_t[y]) * NCKD: the factor suppresses NCKD exactly where
the teacher is confident, and DKD's beta undoes that. Official code: megvii-research/mdistiller
``mdistiller/distillers/DKD.py``. Its linear ramp of the DKD term over the first 20 (of 240) epochs is not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdpipe.distill.base import Distiller
from kdpipe.models import FeatureClassifier


@dataclass(frozen=True)
class DKDSettings:
    """The two parts' weights, the temperature and the CE weight; these defaults are ``method.dkd``'s, chosen
    on val by ``kdpipe study --tune`` (docs: results/changes.md); the official CIFAR-100 ones (mdistiller's
    ``CFG.DKD``) have beta 8."""

    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 4.0
    ce_weight: float = 1.0


def target_and_rest(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD) of the docstring, each scaled by T^2 and averaged over the batch; in log space, so a
    confident teacher (p[y] near 1) costs no precision."""
    is_target = F.one_hot(labels, student_logits.shape[1]).bool()
    n, k = student_logits.shape

    def binary_log(logits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits / temperature, dim=1)
        rest = torch.logsumexp(log_p.masked_fill(is_target, float("-inf")), dim=1)
        return torch.stack([log_p[is_target], rest], dim=1)

    def others_log(logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits[~is_target].view(n, k - 1) / temperature, dim=1)

    scale = temperature**2
    tckd = F.kl_div(binary_log(student_logits), binary_log(teacher_logits), reduction="batchmean", log_target=True)
    nckd = F.kl_div(others_log(student_logits), others_log(teacher_logits), reduction="batchmean", log_target=True)
    return tckd * scale, nckd * scale


class DKD(Distiller):
    def __init__(
        self, student: FeatureClassifier, teacher: FeatureClassifier, cfg: DKDSettings = DKDSettings()
    ) -> None:
        super().__init__(student, teacher)
        self.cfg = cfg

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        tckd, nckd = target_and_rest(s_logits, t_logits.detach(), labels, self.cfg.temperature)
        return {
            "ce": self.cfg.ce_weight * F.cross_entropy(s_logits, labels),
            "tckd": self.cfg.alpha * tckd,
            "nckd": self.cfg.beta * nckd,
        }
