"""How much worse a model gets on corrupted data, and whether the student kept the teacher's robustness.

Each model predicts every corrupted copy of the evaluation split (:mod:`kdpipe.data.corruptions`;
each copy is made once and shared by all models). From the accuracies per corruption c and
severity s come the summaries of ImageNet-C (Hendrycks & Dietterich, ICLR 2019), with the teacher
in AlexNet's place as the reference:

- mean corrupted top-1: the mean over every (c, s) measured;
- CE_c = sum_s err_student(c, s) / sum_s err_teacher(c, s), and mCE = mean_c CE_c;
- relative CE_c = sum_s (err_student(c, s) - err_student(clean)) / sum_s (err_teacher(c, s) -
  err_teacher(clean)), and relative mCE its mean over corruptions where the teacher degrades at all;
- robustness retention = (student corrupted / clean top-1) / (teacher corrupted / clean top-1):
  1 keeps the teacher's robustness, below 1 loses more under shift than the teacher does.

For operational data (field data, no corruption applied) :func:`shift` says how far a set has
moved from the training data: its pixel statistics against the training manifest's, and the
models' confidence on it against their confidence on held-out data of the training distribution.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kdpipe.data.corruptions import CORRUPTIONS, FAST_SEVERITY, SEVERITIES, corrupt
from kdpipe.data.model_images import ModelImages, parts
from kdpipe.data.prepared import channel_stats
from kdpipe.evaluation.metrics import top1

Predict = Callable[[torch.Tensor], torch.Tensor]  # uint8 images -> logits
MODES = {"none": (), "fast": (FAST_SEVERITY,), "full": SEVERITIES}


@dataclass(frozen=True)
class Robustness:
    """One model's top-1 on the clean split and on each (corruption, severity) measured."""

    clean: float
    cells: dict[str, dict[int, float]]

    @property
    def corrupted(self) -> float:
        values = [acc for by_severity in self.cells.values() for acc in by_severity.values()]
        return sum(values) / len(values)


def measure(
    predictors: dict[str, Predict], images: ModelImages, labels: torch.Tensor, mode: str, seed: int
) -> tuple[dict[str, Robustness], float]:
    """Every model on every corrupted copy of ``images``; returns the results and the seconds it took. A split in
    memory is corrupted whole; a streamed one part by part (:func:`kdpipe.data.model_images.parts`), each part with
    its own draw, so memory is one part's."""
    start = time.perf_counter()
    cells: dict[str, dict[str, dict[int, float]]] = {who: {} for who in predictors}
    logits: dict[str, list[torch.Tensor]] = {who: [] for who in predictors}
    for part in parts(images):
        for who, predict in predictors.items():
            logits[who].append(predict(part))
    clean = {who: top1(torch.cat(logits[who]), labels) for who in predictors}
    for name in CORRUPTIONS.names() if MODES[mode] else ():
        for severity in MODES[mode]:
            logits = {who: [] for who in predictors}
            for k, part in enumerate(parts(images)):
                shifted = corrupt(part, name, severity, seed, part=k)
                for who, predict in predictors.items():
                    logits[who].append(predict(shifted))
            for who in predictors:
                cells[who].setdefault(name, {})[severity] = top1(torch.cat(logits[who]), labels)
    return {who: Robustness(clean[who], cells[who]) for who in predictors}, time.perf_counter() - start


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def summary(model: Robustness, teacher: Robustness) -> dict[str, float]:
    """The scalar figures of ``model`` against the teacher (see the module docstring)."""
    ce, relative = [], []
    for name, by_severity in model.cells.items():
        err = [1 - acc for acc in by_severity.values()]
        ref = [1 - teacher.cells[name][s] for s in by_severity]
        ce.append(_ratio(sum(err), sum(ref)))
        drop = sum(e - (1 - teacher.clean) for e in ref)
        if drop > 0:
            relative.append(sum(e - (1 - model.clean) for e in err) / drop)
    return {
        "corrupted_top1": model.corrupted,
        "mce": sum(ce) / len(ce),
        "relative_mce": sum(relative) / len(relative) if relative else math.nan,
        "robustness_retention": _ratio(model.corrupted / model.clean, teacher.corrupted / teacher.clean),
    }


def _confidence(logits: torch.Tensor) -> float:
    return float(logits.softmax(1).max(1).values.mean())


def shift(
    images: torch.Tensor,
    train_mean: list[float],
    train_std: list[float],
    logits: dict[str, torch.Tensor],
    reference: dict[str, torch.Tensor],
) -> dict[str, float]:
    """How far an operational set has moved from the training data.

    - ``input_mean_shift`` / ``input_std_shift``: the set's pixel mean and std (in [0, 1], averaged
      over channels) minus the training split's, from the manifest;
    - ``<model>_confidence_shift``: the model's mean max-softmax on the set minus on ``reference``
      (held-out data of the training distribution): negative when the model is less sure there;
    - ``disagreement``: the share of the set where teacher and student predict different classes.
    """
    mean, std = channel_stats(images)
    out = {
        "input_mean_shift": sum(mean) / len(mean) - sum(train_mean) / len(train_mean),
        "input_std_shift": sum(std) / len(std) - sum(train_std) / len(train_std),
    }
    out.update({f"{who}_confidence_shift": _confidence(logits[who]) - _confidence(reference[who]) for who in logits})
    out["disagreement"] = float((logits["teacher"].argmax(1) != logits["student"].argmax(1)).float().mean())
    return out


def metrics(model: Robustness, teacher: Robustness) -> dict[str, float]:
    """Flat, searchable names: the summary plus ``corruption_<name>_s<severity>_top1`` for each cell."""
    if not model.cells:
        return {}
    cells = {f"corruption_{name}_s{s}_top1": acc for name, by_s in model.cells.items() for s, acc in by_s.items()}
    return {**summary(model, teacher), **cells}
