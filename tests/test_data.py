"""Data: the batch loader, the prepared data set's hash, and clear errors for corrupt raw files.

Corrupt inputs are built from copies of Debian's real Fashion-MNIST archives, each broken in one
way; every error must name the file so a user knows which one to replace.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdpipe import steps
from kdpipe.config import Params, params_from_dict
from kdpipe.data.loader import InMemoryLoader, random_crop
from kdpipe.data.prepared import TENSORS_FILE, load_prepared
from kdpipe.data.sampling import sample
from kdpipe.data.sources import DEBIAN_FASHION_MNIST, MNIST_FILES, load_mnist_like
from kdpipe.infra.errors import ConfigError, DataError
from kdpipe.training.runtime import make_loader, make_runtime


def _loader(n: int, batch: int, train: bool, seed: int = 0) -> InMemoryLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return InMemoryLoader(images, torch.arange(n), batch, [0.0], [1.0], train=train, seed=seed)


def test_loader_drops_only_a_single_leftover_training_image() -> None:
    loader = _loader(3 * 4 + 1, 4, train=True)
    batches = [y for _, y in loader]
    assert [len(y) for y in batches] == [4, 4, 4] and len(loader) == 3
    seen = torch.cat(batches)
    assert len(seen.unique()) == 12

    assert [len(y) for _, y in _loader(3 * 4 + 2, 4, train=True)] == [4, 4, 4, 2]
    evaluation = _loader(3 * 4 + 1, 4, train=False)
    assert [len(y) for _, y in evaluation] == [4, 4, 4, 1] and len(evaluation) == 4


def test_loader_epoch_order_depends_only_on_seed_and_epoch() -> None:
    """Resume relies on this: epoch e is the same batches whether or not the run was interrupted."""

    def order(seed: int, epoch: int) -> torch.Tensor:
        loader = _loader(50, 8, train=True, seed=seed)
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader])

    assert torch.equal(order(0, 3), order(0, 3))
    assert not torch.equal(order(0, 3), order(0, 4))
    assert not torch.equal(order(0, 3), order(1, 3))


def test_random_crop_takes_a_window_of_the_padded_image() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 255, (16, 2, 6, 6), dtype=torch.uint8)
    out = random_crop(x, 2, gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    assert out.shape == x.shape and out.dtype == torch.uint8
    windows = [
        {(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[i, :, dy : dy + 6, dx : dx + 6], out[i])}
        for i in range(len(x))
    ]
    assert all(windows)
    assert len(set().union(*windows)) > 1, "offsets must differ between images"


# --- corrupt raw files --------------------------------------------------------------------------


def _archive_copy(tmp_path: Path) -> Path:
    """A data.root holding copies of the four real archives, for one test to break."""
    root = tmp_path / "root"
    root.mkdir()
    for name in MNIST_FILES:
        shutil.copy(DEBIAN_FASHION_MNIST / f"{name}.gz", root / f"{name}.gz")
    return root


def _idx_labels(header_count: int, labels: bytes) -> bytes:
    return struct.pack(">II", 0x801, header_count) + labels


def _load_error(root: Path) -> str:
    with pytest.raises(DataError) as info:
        load_mnist_like("fashion_mnist", root)
    return str(info.value)


def test_truncated_gzip_names_the_archive(tmp_path: Path) -> None:
    root = _archive_copy(tmp_path)
    archive = root / "train-labels-idx1-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    message = _load_error(root)
    assert str(archive) in message and "gzip" in message


def test_wrong_magic_number_names_the_file(tmp_path: Path) -> None:
    root = _archive_copy(tmp_path)
    archive = root / "t10k-labels-idx1-ubyte.gz"
    archive.write_bytes(
        gzip.compress(
            torch.randint(0, 256, (10008,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
            .numpy()
            .tobytes()
        )
    )
    message = _load_error(root)
    assert "t10k-labels-idx1-ubyte" in message and str(archive) in message and "magic number" in message
    assert not (root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists(), "the bad copy must not linger"


def test_label_count_that_does_not_match_the_images_names_both_files(tmp_path: Path) -> None:
    root = _archive_copy(tmp_path)
    labels = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:]
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(9999, labels[:9999])))
    message = _load_error(root)
    assert "t10k-labels-idx1-ubyte" in message and "t10k-images-idx3-ubyte" in message
    assert "9999 labels" in message and "10000 images" in message


def test_file_shorter_than_its_header_names_the_file(tmp_path: Path) -> None:
    root = _archive_copy(tmp_path)
    labels = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:]
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(10000, labels[:5000])))
    message = _load_error(root)
    assert "t10k-labels-idx1-ubyte" in message and "5008 bytes" in message


def test_cli_reports_a_corrupt_file_on_one_line(tmp_path: Path) -> None:
    root = _archive_copy(tmp_path)
    archive = root / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:100_000])
    (tmp_path / "params.yaml").write_text(f"data:\n  root: {root}\ntracking:\n  enabled: false\n")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kdpipe")), "prepare"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdpipe: error: ") and str(archive) in lines[0]
    assert not (tmp_path / "data" / "prepared").exists()


# --- the prepared data set ----------------------------------------------------------------------


def _prepare(make_params: Callable[..., Params], prepared: Path, seed: int = 0) -> dict:
    params = make_params(
        data__train_subset=600,
        data__val_size=100,
        data__test_subset=200,
        data__seed=seed,
        paths__prepared=str(prepared),
        tracking__enabled=False,
    )
    return steps.prepare_data(params)


def test_prepare_is_deterministic_for_a_seed(make_params: Callable[..., Params], tmp_path: Path) -> None:
    first = _prepare(make_params, tmp_path / "a")
    again = _prepare(make_params, tmp_path / "b")
    other = _prepare(make_params, tmp_path / "c", seed=1)
    assert first["sha256"] == again["sha256"] != other["sha256"]
    a, b = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "b")
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert first["splits"] == {"train": 500, "val": 100, "test": 200}
    assert first["classes"][0] == "T-shirt/top" and len(first["classes"]) == 10
    assert first["shape"] == [1, 28, 28] and first["hflip"] is True
    assert a.tensors["train_x"].dtype == torch.uint8


def test_tampered_prepared_data_fails_the_hash_check(make_params: Callable[..., Params], tmp_path: Path) -> None:
    _prepare(make_params, tmp_path / "prepared")
    path = tmp_path / "prepared" / TENSORS_FILE
    tensors = torch.load(path, weights_only=True)
    tensors["train_y"][0] = (tensors["train_y"][0] + 1) % 10
    torch.save(tensors, path)
    with pytest.raises(DataError, match=r"splits\.pt: content does not match the sha256"):
        load_prepared(tmp_path / "prepared")

    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"splits\.pt: not a kdpipe file, or truncated \(PytorchStreamReader failed"):
        load_prepared(tmp_path / "prepared")


def test_train_subset_is_one_fixed_sample_of_the_train_split(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    """``train.subset`` trains on N train-split images that data.seed picks, never val or test ones."""
    _prepare(make_params, tmp_path / "prepared")
    data = load_prepared(tmp_path / "prepared")
    runtime = make_runtime(make_params(tracking__enabled=False).runtime)
    train_x, _ = data.split("train")

    def seen(train_seed: int, data_seed: int = 0) -> torch.Tensor:
        params = make_params(paths__prepared=str(tmp_path / "prepared"), data__seed=data_seed, train__subset=120)
        loader = make_loader(data, "train", 50, params, runtime, seed=train_seed, subset=params.train.subset)
        return torch.cat([x for x, _ in loader])

    first = seen(train_seed=0)
    assert len(first) == 120
    assert torch.equal(first, seen(train_seed=7)), "the training seed must not change the transfer set"
    assert not torch.equal(first, seen(train_seed=0, data_seed=1))
    sample_x, _ = sample(*data.split("train"), 120, 0)
    flat = train_x.flatten(1)
    assert all(bool((flat == row).all(1).any()) for row in sample_x.flatten(1)), "every image is a train-split image"
    assert sample(*data.split("train"), 10_000, 0)[0].shape == train_x.shape, (
        "a subset larger than the split keeps it all"
    )


def test_the_content_hash_read_in_chunks_is_the_hash_of_all_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashed a chunk at a time (for the progress bar), empty splits included, the digest is the one-pass one."""
    import hashlib
    import json

    from kdpipe.data import prepared

    tensors = {
        "val_x": torch.empty(0, 1, 4, 4, dtype=torch.uint8),
        "train_x": torch.arange(96, dtype=torch.uint8).view(6, 1, 4, 4),
        "train_y": torch.arange(6),
    }
    whole = hashlib.sha256()
    for key in ("train_x", "train_y", "val_x"):
        t = tensors[key]
        whole.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode() + t.numpy().tobytes())
    whole.update(json.dumps(["a", "b"]).encode())
    monkeypatch.setattr(prepared, "HASH_CHUNK", 7)
    assert prepared.content_sha256(tensors, ["a", "b"]) == whole.hexdigest()


def test_a_transfer_set_drawn_excluding_another_shares_no_image_with_it_and_is_fixed_by_its_seed() -> None:
    """The confirmation's draws avoid the tuning set: indices stand in for images, so sharing is exact."""
    ids = torch.arange(1000)
    x, y = ids.view(-1, 1, 1, 1), ids % 10
    tuning = set(sample(x, y, 300, 0)[0].flatten().tolist())
    drawn = {seed: sample(x, y, 300, seed, excluding=0)[0].flatten().tolist() for seed in (1, 2)}
    for seed, images in drawn.items():
        assert len(set(images)) == 300 and tuning.isdisjoint(images), seed
        assert sample(x, y, 300, seed, excluding=0)[0].flatten().tolist() == images
    assert drawn[1] != drawn[2]
    assert set(sample(x, y, 300, 1)[0].flatten().tolist()) & tuning, "without excluding, draws overlap"
    with pytest.raises(DataError, match=r"^train\.subset_excludes: a transfer set of 600 images cannot avoid"):
        sample(x, y, 600, 1, excluding=0)


def test_excluding_a_draw_from_the_whole_split_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^params: train: subset_excludes needs subset: the whole split excludes"):
        params_from_dict({"train": {"subset": None, "subset_excludes": 0}})
