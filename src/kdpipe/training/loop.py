"""The training loop shared by every method and by teacher bootstrapping.

It owns the optimiser and schedule, bf16 autocast on CUDA, a checkpoint at the
end of every epoch (atomic), exact resume, the NaN guard and progress reporting. It knows nothing
of MLflow: callers receive each epoch's record through ``on_epoch``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdpipe.config import TrainConfig
from kdpipe.data.progress import display
from kdpipe.data.streaming import Loader
from kdpipe.distill.base import Distiller
from kdpipe.infra.errors import KdpipeError, NonFiniteLossError
from kdpipe.infra.files import FILE_OVERHEAD, atomic_torch_save, load_checkpoint
from kdpipe.models.folding import inference_copy
from kdpipe.models.top1 import hits
from kdpipe.training.distributed import all_reduce_sum
from kdpipe.training.runtime import Runtime

log = logging.getLogger("kdpipe")

CHECKPOINT_FILE = "last.pt"
STUDENT_CHECKPOINTS = "student"  # the distill step's checkpoints under paths.checkpoints
TEACHER_CHECKPOINTS = "teacher"  # the demo teacher's
EpochCallback = Callable[[dict[str, Any]], None]


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier for an optimiser step: linear warm-up, then the chosen schedule."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "multistep":
        epoch = step // steps_per_epoch
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


@torch.no_grad()
def accuracy(model: nn.Module, loader: Loader, runtime: Runtime) -> float:
    """Top-1 of ``model`` on ``loader``: its :func:`~kdpipe.models.top1.hits` counted on the device, batch by
    batch, on the model as :func:`kdpipe.evaluation.metrics.predict_logits` evaluates it (BNs folded)."""
    folded = inference_copy(model)
    correct = torch.zeros((), device=runtime.device, dtype=torch.long)
    for x, y in loader:
        with runtime.autocast:
            correct += hits(folded(x), y).sum()
    return correct.item() / max(1, loader.num_samples)


class _Progress:
    """A tqdm bar on interactive terminals; otherwise a plain log line every quarter epoch."""

    def __init__(self, mode: str, total: int, desc: str, enabled: bool) -> None:
        self.mode = display(mode) if enabled else "off"
        self.total, self.desc, self.bar = total, desc, None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
        self.next_log = max(1, total // 4)

    def update(self, step: int, images_per_s: float, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(step + 1 - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{images_per_s:.0f}")
        elif self.mode == "log" and self.next_log <= step + 1 < self.total:
            self.next_log += max(1, self.total // 4)
            log.info("%s %d/%d batches, loss %.4f, %.0f images/s", self.desc, step + 1, self.total, loss, images_per_s)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    distiller: Distiller,
    train_loader: Loader,
    val_loader: Loader | None,
    cfg: TrainConfig,
    runtime: Runtime,
    checkpoint_dir: Path,
    *,
    resume: bool = False,
    fingerprint: str = "",
    on_epoch: EpochCallback | None = None,
    label: str = "train",
    wrapped: nn.Module | None = None,
    meta: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``distiller`` for ``cfg.epochs`` epochs and return one record per epoch.

    ``wrapped`` is the module to call for the forward pass when it differs from ``distiller``
    (a DistributedDataParallel wrapper). With ``resume`` the run continues after the last
    completed epoch stored in ``checkpoint_dir`` and ends with the same weights as an
    uninterrupted run. ``meta`` rides along in each checkpoint, unread by the engine.
    """
    model = wrapped if wrapped is not None else distiller
    optimizer = build_optimizer(distiller.trainable_parameters(), cfg)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise KdpipeError(f"{label}: the training split has fewer than 2 images")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    ckpt_path = checkpoint_dir / CHECKPOINT_FILE
    history: list[dict[str, Any]] = []
    start_epoch = 0
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else {}
    if resume and ckpt_path.exists() and state.get("fingerprint") != fingerprint:
        log.warning("%s: %s was written for other params or data; starting from scratch", label, ckpt_path)
    elif resume and ckpt_path.exists():
        distiller.load_trainable_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if runtime.device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], runtime.device)
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        log.info("%s: resuming from %s after epoch %d", label, ckpt_path, start_epoch)
    elif resume:
        log.info("%s: no checkpoint at %s, starting from scratch", label, ckpt_path)

    for epoch in range(start_epoch, cfg.epochs):
        train_loader.set_epoch(epoch)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=runtime.device, dtype=torch.long)
        seen = 0
        progress = _Progress(
            runtime.progress, steps_per_epoch, f"{label} epoch {epoch + 1}/{cfg.epochs}", runtime.is_main
        )
        start = time.perf_counter()
        for step, (x, y) in enumerate(train_loader):
            with runtime.autocast:
                out = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            scheduler.step()
            for name, value in (("loss", out.loss), *out.parts.items()):
                sums[name] = sums.get(name, 0) + value.detach() * len(y)
            correct += hits(out.logits.detach(), y).sum()
            seen += len(y)
            if step % 20 == 0 or step == steps_per_epoch - 1:
                loss_now = out.loss.item()
                if not math.isfinite(loss_now):
                    parts = ", ".join(f"{k}={v.item():.4g}" for k, v in out.parts.items())
                    kept = f"; the last good checkpoint {ckpt_path} is left intact" if ckpt_path.exists() else ""
                    raise NonFiniteLossError(
                        f"{label}: loss became {loss_now} at epoch {epoch + 1}, batch {step + 1} ({parts}); "
                        f"lower train.lr or check the data{kept}"
                    )
                progress.update(step, seen / (time.perf_counter() - start), loss_now)
        progress.close()
        seconds = time.perf_counter() - start
        seen_t = torch.tensor(seen, device=runtime.device)
        for total in (*sums.values(), correct, seen_t):
            all_reduce_sum(total)  # under DDP the epoch's record covers every rank's shard
        seen = int(seen_t.item())
        means = {k: (v / seen).item() for k, v in sums.items()}
        if not all(math.isfinite(v) for v in means.values()):
            raise NonFiniteLossError(
                f"{label}: non-finite loss in epoch {epoch + 1} ({means}); last good checkpoint left intact"
            )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            **{f"loss_{k}" if k != "loss" else "loss": v for k, v in means.items()},
            "train_acc": correct.item() / max(1, seen),
            "images_per_s": seen / seconds,
            "epoch_seconds": seconds,
        }
        if val_loader is not None and runtime.is_main:
            record["val_acc"] = accuracy(distiller.student, val_loader, runtime)
        history.append(record)
        if runtime.is_main:
            if on_epoch is not None:  # first, so that what it adds to the record is checkpointed too
                on_epoch(record)
            state = {
                "epoch": epoch,
                "fingerprint": fingerprint,
                "model": distiller.trainable_state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "history": history,
                "meta": meta or {},
            }
            if runtime.device.type == "cuda":
                state["rng_cuda"] = torch.cuda.get_rng_state(runtime.device)
            atomic_torch_save(state, ckpt_path)
            val = f", val_acc {record['val_acc']:.4f}" if "val_acc" in record else ""
            log.info(
                "%s epoch %d/%d: loss %.4f, train_acc %.4f%s, %.0f images/s, %.1fs",
                label,
                epoch + 1,
                cfg.epochs,
                record["loss"],
                record["train_acc"],
                val,
                record["images_per_s"],
                seconds,
            )
    return history


def training_space(distiller: Distiller, checkpoints: Path, outputs: Path) -> dict[Path, int]:
    """Bytes a training step writes at its peak: the checkpoint (weights and up to two optimiser buffers
    per trainable parameter) beside the old one while the atomic writer swaps them, and the model."""
    trainable = sum(p.numel() * p.element_size() for p in distiller.trainable_parameters())
    model = sum(t.numel() * t.element_size() for t in distiller.student.state_dict().values())
    return {checkpoints: 3 * trainable + model + FILE_OVERHEAD, outputs: model + FILE_OVERHEAD}
