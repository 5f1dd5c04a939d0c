"""The benchmark sets (Fashion-MNIST, MNIST, CIFAR), each read with torchvision's own loaders into uint8 tensors.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package where it is installed: its
gzip files are unpacked into the layout torchvision's ``FashionMNIST`` expects, so the same class
reads them as it reads its own downloads. Where neither exists, torchvision downloads.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdpipe.infra.errors import DataError
from kdpipe.infra.files import atomic_write_bytes

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEFAULT_HFLIP = {
    "fashion_mnist": True,
    "mnist": False,
    "cifar10": True,
    "cifar100": True,
    "imagefolder": True,
    "manifest": True,
}


@dataclass(frozen=True)
class RawData:
    """Train and test splits as ``uint8 [N, C, H, W]`` images and ``int64 [N]`` labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    description: str


def _unpack_gzip(src: Path, dst: Path) -> None:
    try:
        with gzip.open(src, "rb") as fin:
            data = fin.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{src}: not a valid gzip file ({exc})") from None
    atomic_write_bytes(dst, data)


def _stage_idx_files(raw_dir: Path, archive_dirs: list[Path], origins: dict[str, Path]) -> bool:
    """Unpack ``*-ubyte.gz`` files found in ``archive_dirs`` into ``raw_dir``; True when all four exist.

    ``origins`` receives the archive each newly unpacked file came from, so errors can name it.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        if (raw_dir / name).exists():
            continue
        archive = next((d / f"{name}.gz" for d in archive_dirs if (d / f"{name}.gz").exists()), None)
        if archive is None:
            return False
        _unpack_gzip(archive, raw_dir / name)
        origins[name] = archive
    return True


def _describe(path: Path, origins: dict[str, Path]) -> str:
    origin = origins.get(path.name)
    return f"{path} (unpacked from {origin})" if origin else str(path)


def _check_idx_file(path: Path, ndim: int, origins: dict[str, Path]) -> int:
    """Check a uint8 idx file's magic number and that its size fits its header; return its item count.

    torchvision's reader asserts or reshapes on a bad file without naming it, so the header is read here.
    """
    header_len = 4 * (ndim + 1)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        header = fh.read(header_len)
    if len(header) < header_len:
        raise DataError(f"{_describe(path, origins)}: {size} bytes is too short for an idx header")
    magic, *dims = struct.unpack(f">{ndim + 1}I", header)
    if magic != 0x800 + ndim:
        raise DataError(
            f"{_describe(path, origins)}: wrong magic number {magic:#010x}, expected {0x800 + ndim:#010x} "
            f"(a uint8 idx file with {ndim} dimension(s))"
        )
    expected = header_len + math.prod(dims)
    if size != expected:
        raise DataError(
            f"{_describe(path, origins)}: header says shape {dims} ({expected} bytes) but the file has {size} bytes"
        )
    return dims[0]


def _check_idx_files(raw_dir: Path, origins: dict[str, Path]) -> None:
    """Validate the four idx files; a freshly unpacked copy that fails is removed, so fixing its archive suffices."""
    try:
        counts = {name: _check_idx_file(raw_dir / name, 3 if "images" in name else 1, origins) for name in MNIST_FILES}
        for prefix in ("train", "t10k"):
            images, labels = raw_dir / f"{prefix}-images-idx3-ubyte", raw_dir / f"{prefix}-labels-idx1-ubyte"
            if counts[images.name] != counts[labels.name]:
                raise DataError(
                    f"{_describe(labels, origins)}: {counts[labels.name]} labels, but "
                    f"{_describe(images, origins)} has {counts[images.name]} images"
                )
    except DataError:
        for name in origins:
            (raw_dir / name).unlink(missing_ok=True)
        raise


def _check_split(x: torch.Tensor, y: torch.Tensor, n_classes: int, what: str) -> None:
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{what}: {x.shape[0]} images but {y.shape[0]} labels")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise DataError(f"{what}: labels outside 0..{n_classes - 1}")


def load_mnist_like(source: str, root: Path) -> RawData:
    """Fashion-MNIST or MNIST through torchvision, from Debian's files, local files or a download."""
    from torchvision import datasets

    cls = datasets.FashionMNIST if source == "fashion_mnist" else datasets.MNIST
    raw_dir = root / cls.__name__ / "raw"
    archives = [root, raw_dir] + ([DEBIAN_FASHION_MNIST] if source == "fashion_mnist" else [])
    origins: dict[str, Path] = {}
    have_files = _stage_idx_files(raw_dir, archives, origins)
    if have_files:
        _check_idx_files(raw_dir, origins)
    splits = {}
    for train in (True, False):
        prefix = "train" if train else "t10k"
        try:
            ds = cls(str(root), train=train, download=not have_files)
        except RuntimeError as exc:
            if "not found" in str(exc).lower() or "download" in str(exc).lower():
                raise DataError(
                    f"{source}: data not found under {raw_dir} and it cannot be downloaded here ({exc}); "
                    "on Debian run: apt-get install dataset-fashion-mnist"
                ) from None
            raise DataError(f"{raw_dir}/{prefix}-*-ubyte: cannot be read: {exc}") from None
        except (AssertionError, ValueError, OSError) as exc:
            raise DataError(f"{raw_dir}/{prefix}-*-ubyte: corrupt idx file ({exc or type(exc).__name__})") from None
        x, y = ds.data, ds.targets
        if x.ndim != 3:
            raise DataError(f"{raw_dir}/{prefix}-images-idx3-ubyte: expected 3-d images, got shape {tuple(x.shape)}")
        _check_split(x, y, len(cls.classes), f"{raw_dir}/{prefix}-labels-idx1-ubyte")
        splits[train] = (x.unsqueeze(1).contiguous(), y.long())
    return RawData(*splits[True], *splits[False], list(cls.classes), f"torchvision.datasets.{cls.__name__}({raw_dir})")


def load_cifar(source: str, root: Path) -> RawData:
    from torchvision import datasets

    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    splits = {}
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as exc:  # torchvision raises several types for missing or corrupt archives
            raise DataError(f"{source}: cannot load from {root} ({exc})") from None
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor(ds.targets, dtype=torch.long)
        _check_split(x, y, len(ds.classes), f"{source} {'train' if train else 'test'}")
        splits[train] = (x, y)
    return RawData(*splits[True], *splits[False], list(ds.classes), f"torchvision.datasets.{cls.__name__}({root})")


def load_source(source: str, root: str | None) -> RawData:
    """A benchmark set (a team's own images are read by :mod:`kdpipe.data.user_images`)."""
    base = Path(root) if root else Path("data/raw")
    if source in ("fashion_mnist", "mnist"):
        return load_mnist_like(source, base)
    if source in ("cifar10", "cifar100"):
        return load_cifar(source, base)
    raise DataError(f"data.source: {source} is not a benchmark set")
