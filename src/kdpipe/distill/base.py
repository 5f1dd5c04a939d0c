"""What every distillation method shares: a student, a frozen teacher, and a loss made of parts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdpipe.models import FeatureClassifier


@dataclass
class StepOutput:
    loss: torch.Tensor
    parts: dict[str, torch.Tensor]
    logits: torch.Tensor


def kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on softened distributions, scaled by T^2 (Hinton et al. 2015)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


class Distiller(nn.Module):
    """Student plus frozen teacher plus the method's own trainable modules (e.g. a projector).

    The teacher stays in eval mode whatever ``train()`` is called with, has no gradients, and is
    excluded from :meth:`trainable_state_dict`, so its weights and BatchNorm statistics never change.
    Losses are computed in float32 even under autocast.
    """

    uses_teacher = True

    def __init__(self, student: FeatureClassifier, teacher: FeatureClassifier | None) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def loss_parts(
        self,
        s_feats: torch.Tensor,
        s_logits: torch.Tensor,
        t_feats: torch.Tensor | None,
        t_logits: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        t_feats = t_logits = None
        if self.uses_teacher:
            assert self.teacher is not None
            with torch.no_grad():
                t_feats, t_logits = self.teacher.forward_with_features(x)
            t_feats, t_logits = t_feats.float(), t_logits.float()
        s_feats, s_logits = self.student.forward_with_features(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            parts = self.loss_parts(s_feats.float(), s_logits.float(), t_feats, t_logits, labels)
        loss = torch.stack(list(parts.values())).sum()
        return StepOutput(loss, parts, s_logits)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.") and p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise KeyError(f"checkpoint does not fit this method: missing {missing}, unexpected {unexpected}")
