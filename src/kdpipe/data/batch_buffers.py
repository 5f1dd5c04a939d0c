"""Batch memory reused once nobody else holds it, for the streaming loader on the CPU.

A fresh ``[128, 3, 224, 224]`` float batch is 77 MB of new pages that the kernel faults in and zeroes: on 2
CPU cores the view step ran 1.7-1.8x as fast with its batch memory reused (``benchmarks/views.py``); the uint8
batch read from the store is another 25 MB. So the loader reads and writes each batch into one of a
few kept buffers and hands out a view of it, as FFCV and DALI reuse their batch memory. Unlike theirs, a batch is
never overwritten while in use: a buffer is written again only when its memory has no other user (no batch handed
out, no view of one, no tensor autograd saved from one). Keeping a batch is always safe; it costs a new buffer.
The loader keeps its buffers for one epoch: between epochs, and in a loader not being read, nothing is held.
"""

from __future__ import annotations

import torch


def other_users(buffer: torch.Tensor) -> int:
    """Holders of ``buffer``'s memory besides ``buffer`` itself: every tensor viewing it holds its storage.

    ``torch._C._storage_Use_Count`` is torch's own check before it reuses pooled memory (CUDA graph trees); the
    two subtracted are ``buffer`` and the storage object made to ask."""
    return torch._C._storage_Use_Count(buffer.untyped_storage()._cdata) - 2


class BatchBuffers:
    """Buffers of ``[batch_size, *image_shape]`` on the CPU, up to ``keep`` of them; :meth:`take` lends a view of an
    idle one."""

    def __init__(
        self,
        batch_size: int,
        image_shape: tuple[int, ...],
        keep: int,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        self.shape, self.keep, self.dtype = (batch_size, *image_shape), keep, dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.kept: list[torch.Tensor] = []

    def take(self, n: int) -> torch.Tensor:
        """The first ``n`` images of a kept buffer nobody else uses, else of a new one (kept while fewer than
        ``keep`` are and ``n`` fits the batch size)."""
        fits = n <= self.shape[0]
        for buffer in self.kept if fits else ():
            if other_users(buffer) == 0:
                return buffer[:n]
        shape = (max(n, self.shape[0]), *self.shape[1:])
        buffer = torch.empty(shape, dtype=self.dtype, memory_format=self.memory_format)
        if fits and len(self.kept) < self.keep:
            self.kept.append(buffer)
        return buffer[:n]
