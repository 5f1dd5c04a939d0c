"""The no-distillation baseline: cross-entropy only; the teacher is never run."""

from __future__ import annotations

import torch.nn.functional as F

from kdpipe.distill.base import Distiller
from kdpipe.models import FeatureClassifier


class Scratch(Distiller):
    uses_teacher = False

    def __init__(self, student: FeatureClassifier) -> None:
        super().__init__(student, None)

    def loss_parts(self, s_feats, s_logits, t_feats, t_logits, labels):  # type: ignore[override]
        return {"ce": F.cross_entropy(s_logits, labels)}
