"""Which split an image falls in: a pure function of its identity (stable), or a seeded draw (the benchmarks').

Stable split. An image's identity is the sha256 of its file's bytes (a benchmark image's: of its uint8
pixels). Bytes rather than the path: identical duplicate frames land on the same side, and renaming an
image or moving the whole set does not move it between splits; a re-encoded file is a new image. With
``data.group_by`` the identity is the image's group (a part id, a camera, a session), so a group never
straddles two splits. The hash is salted with the fixed tag :data:`SALT`, not ``data.seed``: the seed
draws transfer sets and may change from run to run, the split must not. ``u``, the first 64 bits of
``sha256(SALT, identity)`` as a number in [0, 1), decides: test if ``u < test_fraction`` (only when the
source brings no test split), val if ``u`` is in the next ``val_fraction`` (only when it brings no val
split), else train. Each image is decided alone, so the split is stratified in expectation and a growing
set never moves an image that was already there.

The :class:`SplitScheme` records everything that decides a split; equal fingerprints on two prepared sets
mean an image is in the same split in both, which is what lets the champion be measured on today's data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from kdpipe.config import DataConfig
from kdpipe.infra.errors import ConfigError
from kdpipe.infra.files import fingerprint

SALT = "kdpipe-stable-split-v1"
SEEDED_SOURCES = ("fashion_mnist", "mnist", "cifar10", "cifar100")
SplitName = Literal["train", "val", "test"]


@dataclass(frozen=True)
class SplitScheme:
    """What decides each image's split; fields that do not apply are None so they enter no fingerprint."""

    scheme: Literal["stable", "seeded"]
    identity: str  # stable: "sha256 of file bytes", "sha256 of pixels" or "group"; seeded: "index"
    val_fraction: float | None = None
    test_fraction: float | None = None
    group_by: str | None = None
    salt: str | None = None
    own_test: bool = False
    own_val: bool = False
    val_size: int | None = None
    seed: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(asdict(self))

    def record(self) -> dict[str, Any]:
        """The manifest's ``split`` entry: the scheme, its fingerprint, then the fields it is made of."""
        return {"scheme": self.scheme, "fingerprint": self.fingerprint, **asdict(self)}

    def split_of(self, identity: str) -> SplitName:
        """The split of an image (or group) whose identity is ``identity``: stable schemes only."""
        u = int.from_bytes(hashlib.sha256(f"{self.salt}\0{identity}".encode()).digest()[:8], "big") / 2**64
        test = 0.0 if self.own_test else float(self.test_fraction or 0.0)
        if u < test:
            return "test"
        if not self.own_val and u < test + float(self.val_fraction or 0.0):
            return "val"
        return "train"


def resolve(data: DataConfig) -> Literal["stable", "seeded"]:
    """``data.split`` with ``auto`` resolved: seeded for the benchmark sets, stable for a team's own data.

    ``data.val_size`` sizes the seeded split only. params.yaml lists every key, so "set explicitly" cannot be
    told from the file: a val_size other than its default under a stable split is the error.
    """
    split = data.split if data.split != "auto" else "seeded" if data.source in SEEDED_SOURCES else "stable"
    if split == "stable" and data.val_size != DataConfig().val_size:
        raise ConfigError(
            f"data.val_size: {data.val_size} sizes the seeded split only, and data.split resolves to stable "
            f"for {data.source}; set data.val_fraction instead"
        )
    if split == "seeded" and data.source not in SEEDED_SOURCES:
        raise ConfigError(
            f"data.split: seeded draws data.val_size images with data.seed, the benchmark sets' split; "
            f"a {data.source} source is split stably (data.split: stable or auto)"
        )
    if split == "seeded" and data.group_by is not None:
        raise ConfigError("data.group_by: groups apply to the stable split only; set data.split: stable")
    return split


def stable_scheme(data: DataConfig, identity: str, *, own_test: bool, own_val: bool) -> SplitScheme:
    return SplitScheme(
        "stable",
        "group" if data.group_by else identity,
        val_fraction=None if own_val else data.val_fraction,
        test_fraction=None if own_test else data.test_fraction,
        group_by=data.group_by,
        salt=SALT,
        own_test=own_test,
        own_val=own_val,
    )


def seeded_scheme(data: DataConfig) -> SplitScheme:
    return SplitScheme(
        "seeded",
        "index",
        own_test=True,
        val_size=data.val_size,
        seed=data.seed,
        train_subset=data.train_subset,
        test_subset=data.test_subset,
    )


def path_group(pattern: re.Pattern[str], rel_path: str) -> str:
    """The group of an image by a regex on its relative path: the first group, else the whole match."""
    match = pattern.search(rel_path)
    if match is None:
        raise ConfigError(f"data.group_by {pattern.pattern!r}: does not match the image {rel_path}")
    return match.group(1) if pattern.groups else match.group(0)


def compile_group(group_by: str) -> re.Pattern[str]:
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise ConfigError(f"data.group_by {group_by!r}: not a valid regex ({exc})") from None
