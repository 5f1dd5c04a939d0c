"""Reading a team's image files: hashed, decoded and resized, in processes, in the listing's order.

Each file is read once: its bytes are hashed (its identity for the stable split) and decoded in the image's own
channels (a greyscale mode stays one channel, any other becomes RGB, alpha dropped), then resized by
``data.resize``:

- ``square``: to ``size x size``, aspect ignored (the in-memory default, as before the store existed);
- ``shorter_side``: the shorter side to ``size``, then the central ``size x size`` square;
- ``none``: as it is (every image must then have one size).

:func:`decoded` spreads the files over ``workers`` processes in chunks of :data:`CHUNK` and yields them back in
order, with at most :data:`IN_FLIGHT_IMAGES` images decoded ahead (one chunk a worker where that is more): memory
is bounded by those chunks, not by the set (with ``data.image_size`` null, by the images' own size), and the
result is the same bytes as decoding in this process.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from kdpipe.infra.errors import DataError

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
CHUNK = 64
IN_FLIGHT_IMAGES = 2048  # decoded ahead at most (400 MB at 256 px RGB), or one chunk a worker where there are more
PARALLEL_MIN = 2000  # below this many files, starting worker processes costs more than it saves


@dataclass(frozen=True)
class Decoded:
    """One file: its sha256 and uint8 ``[C, H, W]`` pixels, or why it could not be read."""

    sha256: str = ""
    image: np.ndarray | None = None
    error: str = ""


def decode(content: bytes, size: int | None, resize: str = "square") -> np.ndarray:
    """uint8 ``[C, H, W]`` in the image's own channels (1 or 3), resized as ``resize`` says (none when ``size``
    is None)."""
    from PIL import Image

    with Image.open(io.BytesIO(content)) as img:
        img = img.convert("L" if img.mode in GREY_MODES else "RGB")
        if size and resize == "square":
            img = img.resize((size, size), Image.BILINEAR)
        elif size and resize == "shorter_side":
            w, h = img.size
            scale = size / min(w, h)
            w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((w2, h2), Image.BILINEAR)
            left, top = (w2 - size) // 2, (h2 - size) // 2
            img = img.crop((left, top, left + size, top + size))
        pixels = np.array(img, dtype=np.uint8)  # a copy: writable, as torch wants it
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def read_file(path: Path, size: int | None, resize: str) -> Decoded:
    """The file's sha256 and image; a file that cannot be read or decoded gives its reason instead."""
    from PIL import Image, UnidentifiedImageError

    try:
        content = path.read_bytes()
        return Decoded(hashlib.sha256(content).hexdigest(), decode(content, size, resize))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return Decoded(error=str(exc) or type(exc).__name__)


def _read_chunk(paths: Sequence[Path], size: int | None, resize: str) -> list[Decoded]:
    return [read_file(p, size, resize) for p in paths]


def worker_count(workers: int | None, files: int) -> int:
    """``data.workers`` resolved: null is one per core for :data:`PARALLEL_MIN` files or more, else none."""
    if workers is None:
        return (os.cpu_count() or 1) if files >= PARALLEL_MIN else 0
    return workers


def decoded(paths: Sequence[Path], size: int | None, resize: str, workers: int) -> Iterator[Decoded]:
    """Each file of ``paths``, read as :func:`read_file` does, in order; ``workers`` processes (0: this one)."""
    if workers <= 0:
        for p in paths:
            yield read_file(p, size, resize)
        return
    ahead = max(workers, IN_FLIGHT_IMAGES // CHUNK)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending: deque = deque()
        for start in range(0, len(paths), CHUNK):
            pending.append((paths[start], pool.submit(_read_chunk, paths[start : start + CHUNK], size, resize)))
            if len(pending) >= ahead:
                yield from _result(*pending.popleft())
        while pending:
            yield from _result(*pending.popleft())


def _result(first: Path, future: Future) -> list[Decoded]:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise DataError(
            f"a decoding process died reading the {CHUNK} files from {first} on ({exc}); out of memory? "
            "lower data.workers"
        ) from None


def header_channels(paths: Sequence[Path]) -> int:
    """The majority's channels (RGB on a tie) from the files' headers alone: what the store is written in when
    ``data.channels`` is null. An unreadable header counts for neither; decoding reports it."""
    from PIL import Image

    grey = colour = 0
    for p in paths:
        try:
            with Image.open(p) as img:
                grey, colour = (grey + 1, colour) if img.mode in GREY_MODES else (grey, colour + 1)
        except Exception:
            continue
    return 1 if grey > colour else 3
