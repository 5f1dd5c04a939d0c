"""How good and how cheap a classifier is: accuracy, calibration, agreement, latency and size.

Every whole-split top-1 is one path: :func:`predict_logits` (the model with its BatchNorms folded, batch by
batch), then :func:`top1` (:mod:`kdpipe.models.top1`, the definition the training loop counts with too).
"""

from __future__ import annotations

import io
import itertools
import time
from typing import Any

import torch
from torch import nn

from kdpipe.data.streaming import Loader
from kdpipe.models.folding import inference_copy
from kdpipe.models.top1 import top1

ECE_BINS = 15


@torch.no_grad()
def predict_logits(model: nn.Module, loader: Loader) -> torch.Tensor:
    """The model's logits on every batch, in eval mode with its BatchNorms folded (the model is untouched)."""
    folded = inference_copy(model)
    return torch.cat([folded(x).float() for x, _ in loader]).cpu()


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    conf, pred = probs.max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return float(ece)


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
) -> dict[str, Any]:
    num_classes = logits.shape[1]
    pred = logits.argmax(1)
    k = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class = confusion.diag().float() / confusion.sum(1).clamp_min(1).float()
    metrics: dict[str, Any] = {
        "top1": top1(logits, labels),
        "top5": float((logits.topk(k, 1).indices == labels[:, None]).any(1).float().mean()),
        "ece": expected_calibration_error(logits.softmax(1), labels),
        "per_class_accuracy": [round(float(v), 6) for v in per_class],
        "confusion_matrix": confusion.tolist(),
        "num_samples": len(labels),
    }
    if teacher_logits is not None:
        metrics["teacher_agreement"] = float((teacher_logits.argmax(1) == pred).float().mean())
    return metrics


def model_size(model: nn.Module) -> dict[str, int]:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return {"parameters": sum(p.numel() for p in model.parameters()), "size_bytes": buf.getbuffer().nbytes}


@torch.no_grad()
def measure_speed(
    model: nn.Module, sample_shape: tuple[int, ...], device: torch.device, batch: int = 256, repeats: int = 30
) -> dict[str, Any]:
    """Latency per image at batch 1 (median) and images/s at ``batch`` on ``device``."""
    was_training = model.training
    model.eval()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    one = torch.randn(1, *sample_shape, device=device)
    for _ in range(5):
        model(one)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        model(one)
        sync()
        times.append(time.perf_counter() - t0)
    many = torch.randn(batch, *sample_shape, device=device)
    model(many)
    sync()
    t0 = time.perf_counter()
    reps = 3
    for _ in range(reps):
        model(many)
    sync()
    throughput = reps * batch / (time.perf_counter() - t0)
    model.train(was_training)
    return {
        "latency_ms_batch1": 1000 * sorted(times)[len(times) // 2],
        f"throughput_batch{batch}": throughput,
        "device": str(device),
    }


def inference_cost(model: nn.Module, sample_shape: tuple[int, ...], device: torch.device) -> dict[str, Any]:
    """Size and speed side by side: parameters, bytes, batch-1 latency and throughput."""
    return {**model_size(model), **measure_speed(model, sample_shape, device)}


def scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The plain numbers and strings of a metrics dict (no matrices, no bins): what metrics.json holds."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
