"""Where a step runs and how it feeds its models: the device, threads, loaders and model placement.

Every step builds these from ``params.runtime`` and the prepared data's manifest, so the teacher,
the student and every evaluation see the same normalisation, crops and memory format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from kdpipe import identity
from kdpipe.config import Params, RuntimeConfig
from kdpipe.data.loader import InMemoryLoader
from kdpipe.data.prepared import PreparedData
from kdpipe.data.sampling import Images, sample
from kdpipe.data.store import StoredImages
from kdpipe.data.streaming import Loader, StreamingLoader
from kdpipe.infra.errors import KdpipeError
from kdpipe.models import FeatureClassifier
from kdpipe.training.diagnostics import RANK_BATCH
from kdpipe.training.distributed import per_rank_batch

_DEFAULTS = RuntimeConfig()


@dataclass
class Runtime:
    """``params.runtime`` resolved for this process: its device, precision, progress display, rank, and how
    it evaluates (batch size) and lays out (memory format) images and models."""

    device: torch.device
    amp: bool = False
    progress: str = _DEFAULTS.progress
    is_main: bool = True
    eval_batch_size: int = _DEFAULTS.eval_batch_size
    channels_last: bool = _DEFAULTS.channels_last

    @property
    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp and self.device.type == "cuda")


def gpu_hours(runtime: Runtime, world_size: int, seconds: float) -> float:
    """What a run cost the cluster in GPUs: one per rank on CUDA (none on CPU), times its wall time, in hours."""
    return (world_size if runtime.device.type == "cuda" else 0) * seconds / 3600


def make_runtime(rt: RuntimeConfig, rank: int = 0) -> Runtime:
    """The device (``runtime.device``), CPU threads, autocast and progress of this process."""
    torch.set_num_threads(rt.num_threads or os.cpu_count() or 1)
    if rt.device == "cuda" and not torch.cuda.is_available():
        raise KdpipeError("runtime.device: 'cuda' requested but no CUDA device is available")
    use_cuda = rt.device == "cuda" or (rt.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if use_cuda else "cpu")
    return Runtime(
        device=device,
        amp=rt.amp and use_cuda,
        progress=rt.progress,
        is_main=rank == 0,
        eval_batch_size=rt.eval_batch_size,
        channels_last=rt.channels_last,
    )


def make_loader(
    data: PreparedData,
    split: str,
    batch_size: int,
    params: Params,
    runtime: Runtime,
    *,
    train: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    subset: int | None = None,
    sample_seed: int | None = None,
    sample_excluding: int | None = None,
) -> Loader:
    """Batches of one split on the runtime's device; ``subset`` draws a fixed sample by ``sample_seed``
    (default ``data.seed``), from what ``sample_excluding``'s draw leaves out when given."""
    seed = params.data.seed if sample_seed is None else sample_seed
    x, y = sample(*data.split(split), subset, seed, sample_excluding)
    return split_loader(
        x,
        y,
        data,
        batch_size,
        runtime,
        train=train,
        seed=seed,
        crop_padding=params.data.crop_padding,
        rank=rank,
        world_size=world_size,
    )


def split_loader(
    images: Images,
    labels: torch.Tensor,
    data: PreparedData,
    batch_size: int,
    runtime: Runtime,
    *,
    train: bool = False,
    seed: int = 0,
    crop_padding: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Loader:
    """The in-memory loader for tensors, the streaming loader for the store's images, normalised as ``data``'s."""
    m = data.manifest
    common = {
        "train": train,
        "hflip": bool(m["hflip"]),
        "seed": seed,
        "device": runtime.device,
        "channels_last": runtime.channels_last,
        "rank": rank,
        "world_size": world_size,
    }
    if isinstance(images, StoredImages):
        return StreamingLoader(images, labels, batch_size, m["mean"], m["std"], image_size=data.image_size, **common)
    return InMemoryLoader(images, labels, batch_size, m["mean"], m["std"], crop_padding=crop_padding, **common)


def transfer_seed(params: Params) -> int:
    """:func:`kdpipe.identity.transfer_seed` of ``params``: the seed that draws the student's transfer set."""
    return identity.transfer_seed(params.data, params.train)


def student_views(data: PreparedData, params: Params, runtime: Runtime, rank: int = 0, world_size: int = 1) -> Loader:
    """What the student trains on, on this rank: the transfer set (``train.subset``), augmented from
    :func:`kdpipe.identity.view_seed`, in this rank's share of the global ``train.batch_size``."""
    return make_loader(
        data,
        "train",
        per_rank_batch(params.train.batch_size, world_size),
        params,
        runtime,
        train=True,
        seed=identity.view_seed(params.train),
        rank=rank,
        world_size=world_size,
        subset=params.train.subset,
        sample_seed=identity.transfer_seed(params.data, params.train),
        sample_excluding=params.train.subset_excludes,
    )


def images_loader(images: torch.Tensor, data: PreparedData, runtime: Runtime) -> InMemoryLoader:
    """Other uint8 images (a corrupted copy of a split) in order, normalised as ``data``'s, unaugmented."""
    m = data.manifest
    return InMemoryLoader(
        images,
        torch.zeros(len(images), dtype=torch.long),
        runtime.eval_batch_size,
        m["mean"],
        m["std"],
        device=runtime.device,
        channels_last=runtime.channels_last,
    )


def eval_loader(data: PreparedData, split: str, runtime: Runtime) -> Loader:
    """The split in order, unaugmented, at ``runtime.eval_batch_size``."""
    return split_loader(*data.split(split), data, runtime.eval_batch_size, runtime)


def place_model(model: FeatureClassifier, runtime: Runtime) -> FeatureClassifier:
    """The model on the runtime's device, in ``runtime.channels_last`` memory format (cuDNN and oneDNN
    convolutions both run faster on it: ``benchmarks/eval.py``)."""
    model = model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def rank_probe(data: PreparedData, params: Params, runtime: Runtime) -> torch.Tensor:
    """A fixed, normalised batch on which the projector's effective rank is measured each epoch."""
    split = "val" if len(data.split("val")[1]) >= 2 else "train"
    return next(iter(make_loader(data, split, RANK_BATCH, params, runtime)))[0]
