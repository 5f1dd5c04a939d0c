"""Data-parallel training under torchrun: joining the process group and wrapping the distiller.

torchrun starts one process per GPU and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; this
module turns those into a process group (nccl on GPU, gloo on CPU) and a DDP wrapper. Without
torchrun everything here is a no-op, so the same ``kdpipe distill`` runs on one device or many.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from kdpipe.distill.base import Distiller
from kdpipe.infra.errors import ConfigError

# torch 2.14 renamed broadcast_buffers to forward_sync_buffers; older releases (pyproject allows them)
# only know the first name.
_SYNC_BUFFERS = (
    {"forward_sync_buffers": True}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": True}
)


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """``train.batch_size`` is the global batch: each rank takes an equal share, so 1 or N GPUs train the same
    recipe at the same learning rate."""
    if world_size < 1:
        raise ConfigError(f"world size must be at least 1, got {world_size}")
    if global_batch % world_size:
        raise ConfigError(
            f"train.batch_size: {global_batch} does not divide across {world_size} ranks; "
            f"use a multiple of {world_size}"
        )
    return global_batch // world_size


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[World]:
    """This process's place in the torchrun world, with the process group joined for the duration.

    On CUDA each process is pinned to the GPU of its local rank before anything allocates, so
    ``torch.cuda.current_device()`` is that GPU for the rest of the step.
    """
    if not launched_by_torchrun():
        yield World()
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield World(dist.get_rank(), dist.get_world_size(), local_rank)
    finally:
        dist.destroy_process_group()


def wrap(distiller: Distiller, device: torch.device) -> nn.Module:
    """DDP over the whole distiller: student, projector and the frozen teacher.

    The teacher's parameters have ``requires_grad=False``, so DDP leaves them out of gradient
    reduction; every trainable parameter (student, projector) is reached by the loss at every
    step, so ``find_unused_parameters`` stays off and no extra graph walk is paid. Buffers
    (BatchNorm running statistics) are broadcast from rank 0 before each forward, so every rank
    runs with the statistics that rank 0 evaluates and checkpoints. Gradients live in the
    all-reduce buckets (no copy, whatever memory layout a kernel picks for them).
    """
    return DistributedDataParallel(
        distiller,
        device_ids=[device.index] if device.type == "cuda" else None,
        **_SYNC_BUFFERS,
        find_unused_parameters=False,
        gradient_as_bucket_view=True,
    )


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (nothing to do outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
