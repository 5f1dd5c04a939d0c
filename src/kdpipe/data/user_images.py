"""A team's images (class folders or a manifest, local or remote), read, checked and split for the in-memory path.

Each image is read once: its bytes are hashed (its identity for the stable split, unless data.group_by
groups it), decoded, resized to ``data.image_size`` and listed in the per-image record as it goes.

Channels are kept: a greyscale image (PIL modes 1, L, LA, I, F) stays one channel, any other becomes RGB
(alpha dropped). ``data.channels`` converts every image to 1 or 3; left null, a set that mixes both is
converted to its majority (RGB on a tie), so one odd colour frame does not turn a greyscale set to RGB.

Bad images: with ``data.on_bad_image: fail`` the first unreadable file is an error naming it; with
``skip`` it is left out and listed (status ``skipped``), and more than ``data.max_bad_fraction`` of the
set still is an error.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from kdpipe.config import DataConfig
from kdpipe.data.folders import list_folders
from kdpipe.data.image_record import ImageRow, record_writer
from kdpipe.data.listing import ImageEntry, Listing
from kdpipe.data.manifest_source import read_manifest
from kdpipe.data.operational import conform
from kdpipe.data.prepared import SPLITS, pick
from kdpipe.data.progress import progress
from kdpipe.data.references import fetch, is_remote, parse
from kdpipe.data.stable_split import SplitScheme, compile_group, path_group, stable_scheme
from kdpipe.infra.errors import DataError

log = logging.getLogger("kdpipe")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class UserData:
    tensors: dict[str, torch.Tensor]
    classes: list[str]
    description: str
    scheme: SplitScheme
    skipped: int


@contextmanager
def local_root(uri: str, is_file: bool) -> Iterator[Path]:
    """``data.root`` as a local path: a local or ``pvc:`` path as it is, an ``s3://`` or ``dvc+`` one fetched
    into a scratch folder for the block (a manifest with the folder it sits in)."""
    if not is_remote(uri):
        yield Path(uri.removeprefix("pvc:"))
        return
    ref = parse(uri, what="data.root")
    folder, _, name = ref.location.rpartition("/") if is_file else (ref.location, "", "")
    with tempfile.TemporaryDirectory(prefix="kdpipe-data-") as scratch:
        fetch(replace(ref, location=folder), Path(scratch) / "root", what="data.root")
        yield Path(scratch) / "root" / name if is_file else Path(scratch) / "root"


def decode(content: bytes, image_size: int | None) -> torch.Tensor:
    """uint8 ``[C, H, W]`` in the image's own channels (1 or 3), resized to a square ``image_size``."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    with Image.open(io.BytesIO(content)) as img:
        img = img.convert("L" if img.mode in GREY_MODES else "RGB")
        if image_size:
            img = img.resize((image_size, image_size), Image.BILINEAR)
        return pil_to_tensor(img)


def _read(entry: ImageEntry, image_size: int | None) -> tuple[str, torch.Tensor]:
    """The file's sha256 and its image; a file that cannot be read or decoded raises ValueError with why."""
    from PIL import Image, UnidentifiedImageError

    try:
        content = entry.file.read_bytes()
        return hashlib.sha256(content).hexdigest(), decode(content, image_size)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def _split_of(entry: ImageEntry, identity: str, scheme: SplitScheme) -> str:
    if entry.given_split in ("val", "test"):
        return entry.given_split
    return scheme.split_of(identity)


def _read_all(
    listing: Listing, data: DataConfig, scheme: SplitScheme, record: Path, progress_mode: str
) -> tuple[dict, int]:
    """Each split's images and labels, in the listing's order; and how many files were skipped."""
    pattern = compile_group(data.group_by) if data.group_by and not listing.grouped else None
    index = {c: i for i, c in enumerate(listing.classes)}
    out: dict[str, tuple[list[torch.Tensor], list[int]]] = {s: ([], []) for s in SPLITS}
    skipped, first = 0, None
    with (
        record_writer(record) as rows,
        progress("prepare: reading images", len(listing.entries), mode=progress_mode) as bar,
    ):
        for entry in listing.entries:
            bar.advance()
            group = path_group(pattern, entry.rel) if pattern else entry.group
            try:
                sha, image = _read(entry, data.image_size)
            except ValueError as exc:
                if data.on_bad_image == "fail":
                    raise DataError(
                        f"{entry.file}: cannot read the image ({exc}); data.on_bad_image: skip leaves such files out"
                    ) from None
                skipped += 1
                rows.write(ImageRow(entry.rel, entry.label, "", group or "", "", "skipped", str(exc)))
                continue
            first = first or (entry, image.shape)
            if data.image_size is None and image.shape[1:] != first[1][1:]:
                raise DataError(
                    f"{entry.file}: {image.shape[2]}x{image.shape[1]} pixels, but {first[0].file} has "
                    f"{first[1][2]}x{first[1][1]}; set data.image_size to resize every image"
                )
            split = _split_of(entry, f"group:{group}" if group is not None else f"sha256:{sha}", scheme)
            out[split][0].append(image)
            out[split][1].append(index[entry.label])
            rows.write(ImageRow(entry.rel, entry.label, split, group or "", sha))
    return out, skipped


def _check_bad(total: int, skipped: int, data: DataConfig, record: str) -> None:
    if skipped > data.max_bad_fraction * total:
        raise DataError(
            f"{skipped} of {total} images cannot be read ({skipped / total:.1%}), more than data.max_bad_fraction "
            f"{data.max_bad_fraction}: is data.root the right set?"
        )
    if skipped:
        log.warning("prepare: %d of %d images cannot be read and were left out (listed in %s)", skipped, total, record)


def _channels(images: list[torch.Tensor], wanted: int | None) -> int:
    grey = sum(1 for t in images if t.shape[0] == 1)
    return wanted or (1 if grey > len(images) - grey else 3)


def _stack(out: dict, data: DataConfig) -> dict[str, torch.Tensor]:
    channels = _channels([t for s in SPLITS for t in out[s][0]], data.channels)
    tensors: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(data.seed)
    for split in SPLITS:
        images, labels = out[split]
        if not images:
            raise DataError(
                f"no image fell in the {split} split (val_fraction {data.val_fraction}, test_fraction "
                f"{data.test_fraction}): the set is too small for them, or data.group_by leaves too few groups"
            )
        x = torch.stack(
            [t if t.shape[0] == channels else conform(t[None], (channels, *t.shape[1:]))[0] for t in images]
        )
        y = torch.tensor(labels, dtype=torch.long)
        subset = {"train": data.train_subset, "test": data.test_subset}.get(split)
        keep = pick(len(y), subset, gen)
        tensors[f"{split}_x"], tensors[f"{split}_y"] = x[keep].contiguous(), y[keep].contiguous()
    return tensors


def load_user_data(data: DataConfig, record: Path, progress_mode: str = "auto") -> UserData:
    """Read ``data.root`` (class folders or a manifest), split it stably, and list each image in ``record``;
    ``progress_mode``: ``runtime.progress``."""
    if data.root is None:
        raise DataError(
            f"data.root: a {data.source} source needs its {'manifest file' if data.source == 'manifest' else 'folder'}"
        )
    with local_root(data.root, is_file=data.source == "manifest") as root:
        if data.source == "manifest":
            listing = read_manifest(root, data.group_by, data.root)
        else:
            listing = list_folders(root, data.root)
        scheme = stable_scheme(data, "sha256 of file bytes", own_test=listing.own_test, own_val=listing.own_val)
        out, skipped = _read_all(listing, data, scheme, record, progress_mode)
    _check_bad(len(listing.entries), skipped, data, record.name)
    return UserData(_stack(out, data), list(listing.classes), listing.description, scheme, skipped)
