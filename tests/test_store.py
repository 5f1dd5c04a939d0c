"""The prepared store on disk, its views and its streaming loader, on small random images.

The store must give back exactly the bytes written (a wrong offset at a shard boundary would train on the wrong
image without an error), its hashes must catch a single changed byte, and each view must be a pure function of
(seed, epoch, index) whatever batch, rank or read order brings the image: the teacher-output cache relies on it.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import THREADS
from kdpipe.data import store
from kdpipe.data.batch_buffers import BatchBuffers
from kdpipe.data.store import ShardWriter, SplitRecord, StoredImages, verify
from kdpipe.data.streaming import StreamingLoader, one_openmp_thread, read_ahead
from kdpipe.data.views import RATIO, SCALE, center_crops, resized_crops, train_views, uniforms
from kdpipe.infra.errors import DataError

SHAPE = (3, 20, 24)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *SHAPE), dtype=np.uint8)


def _store(directory: Path, images: np.ndarray, shard_images: int = 7) -> tuple[StoredImages, SplitRecord]:
    writer = ShardWriter(directory, "train", SHAPE, shard_images=shard_images)
    for start in range(0, len(images), 5):  # appends that straddle the shard boundaries
        writer.append(images[start : start + 5], list(range(start, min(start + 5, len(images)))))
    record = writer.close()
    assert [s.images for s in record.shards] == [min(shard_images, len(images) - k) for k in range(0, 23, shard_images)]
    return StoredImages(directory, record.shards, SHAPE), record


def test_reads_give_back_the_written_images_in_any_order_and_across_shard_boundaries(tmp_path: Path) -> None:
    images = _images(23)
    stored, _ = _store(tmp_path, images)
    order = np.random.default_rng(1).permutation(23)
    assert torch.equal(stored.read(order), torch.from_numpy(images[order]))
    assert torch.equal(stored.read(np.arange(5, 16)), torch.from_numpy(images[5:16]))  # one run, three shards
    view = stored.subset(torch.tensor([22, 3, 14]))
    assert view.shape == (3, *SHAPE)
    assert torch.equal(view.read([2, 0]), torch.from_numpy(images[[14, 22]]))
    assert torch.equal(stored.read(np.arange(23)), torch.from_numpy(images))


def test_a_view_keeps_few_shard_files_open_however_many_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "OPEN_SHARDS", 4)
    images = _images(23)
    stored, record = _store(tmp_path, images, shard_images=1)  # 23 shards
    assert len(record.shards) == 23
    order = np.random.default_rng(2).permutation(23)
    assert torch.equal(stored.read(order), torch.from_numpy(images[order]))
    assert len(stored._fds) == 4
    stored.close()
    assert stored._fds == {}


def test_the_labels_are_kept_in_image_order(tmp_path: Path) -> None:
    _, record = _store(tmp_path, _images(23))
    assert np.load(tmp_path / record.labels).tolist() == list(range(23))


def test_verification_names_the_shard_where_one_byte_was_flipped(tmp_path: Path) -> None:
    _, record = _store(tmp_path, _images(23))
    verify(tmp_path, {"train": record}, progress_mode="off")
    shard = tmp_path / record.shards[2].file
    content = bytearray(shard.read_bytes())
    content[len(content) // 2] ^= 0x01
    shard.write_bytes(bytes(content))
    with pytest.raises(DataError, match=record.shards[2].file):
        verify(tmp_path, {"train": record}, progress_mode="off")


def test_a_shard_shorter_than_its_manifest_is_an_error_not_a_short_image(tmp_path: Path) -> None:
    stored, record = _store(tmp_path, _images(23))
    last = tmp_path / record.shards[-1].file
    last.write_bytes(last.read_bytes()[:-10])
    with pytest.raises(DataError, match="shorter than its manifest"):
        stored.read([22])


def test_a_view_depends_on_seed_epoch_and_index_only_not_on_its_batch() -> None:
    alone = train_views(5, 2, np.array([17]), 64, 80, hflip=True)
    among = train_views(5, 2, np.array([3, 17, 40]), 64, 80, hflip=True)
    assert np.array_equal(alone.boxes[0], among.boxes[1]) and alone.flips[0] == among.flips[1]
    other_epoch = train_views(5, 3, np.arange(200), 64, 80, hflip=True)
    same_epoch = train_views(5, 2, np.arange(200), 64, 80, hflip=True)
    assert (other_epoch.boxes != same_epoch.boxes).any(axis=1).mean() > 0.9


def test_the_counter_based_numbers_are_uniform_and_independent_of_each_other() -> None:
    u = uniforms(0, 0, np.arange(20_000), 2)
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.003
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.03  # neighbouring indices


def test_training_boxes_follow_the_random_resized_crop_rule() -> None:
    """Inside the image; area share in SCALE and ratio in RATIO up to rounding; flips about half."""
    h, w = 256, 256
    views = train_views(0, 0, np.arange(5000), h, w, hflip=True)
    top, left, bh, bw = views.boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    share = bh * bw / (h * w)
    assert share.min() >= SCALE[0] * 0.95 and share.max() <= SCALE[1]
    ratio = bw / bh
    assert (ratio >= RATIO[0] * 0.9).all() and (ratio <= RATIO[1] * 1.1).all()
    assert abs(np.log(ratio).mean()) < 0.02  # log-uniform about 1
    assert 0.47 < views.flips.mean() < 0.53
    assert not train_views(0, 0, np.arange(100), h, w, hflip=False).flips.any()


def test_a_wide_image_falls_back_to_the_central_crop_at_the_largest_ratio() -> None:
    views = train_views(0, 0, np.arange(50), 4, 400, hflip=False)  # no try fits a 4-pixel height
    assert (views.boxes == np.array([0, 197, 4, 5])).all(axis=1).any()
    assert math.isclose(5 / 4, RATIO[1], rel_tol=0.1)


@pytest.mark.parametrize("size", [8, 48])  # boxes shrunk, boxes enlarged
def test_resized_crops_are_torchvisions_resized_crop_of_each_box_flipped_where_asked(size: int) -> None:
    """kdpipe resizes a channels-last copy of the box with torch's own uint8 kernel; torchvision's function is the
    reference, to the bit (the teacher-output cache keys these pixels)."""
    from torchvision.transforms.v2 import functional as tvf

    x = torch.from_numpy(_images(16))
    views = train_views(1, 0, np.arange(16), *SHAPE[1:], hflip=True)
    out = resized_crops(x, views, size)
    assert views.flips.any() and not views.flips.all()
    for k in range(16):
        expected = tvf.resized_crop(x[k], *views.boxes[k].tolist(), [size, size], antialias=True)
        assert torch.equal(out[k], expected.flip(2) if views.flips[k] else expected)


def _loader(stored: StoredImages, labels: torch.Tensor, **kw: object) -> StreamingLoader:
    return StreamingLoader(stored, labels, 4, [0.5] * 3, [0.25] * 3, image_size=16, **kw)


def test_the_streamed_evaluation_batches_are_the_central_crops_in_order(tmp_path: Path) -> None:
    images = _images(23)
    stored, _ = _store(tmp_path, images)
    labels = torch.arange(23)
    loader = _loader(stored, labels)
    got = list(loader)
    assert len(got) == len(loader) == 6
    x = torch.cat([b[0] for b in got])
    expected = loader.normalize(center_crops(torch.from_numpy(images), 16))
    assert torch.equal(x, expected) and torch.equal(torch.cat([b[1] for b in got]), labels)


def test_a_streamed_training_epoch_is_the_same_read_ahead_or_not_and_differs_by_epoch(tmp_path: Path) -> None:
    stored, _ = _store(tmp_path, _images(23))
    labels = torch.arange(23)
    a = list(_loader(stored, labels, train=True, hflip=True, seed=3, prefetch=1))
    b = list(_loader(stored, labels, train=True, hflip=True, seed=3, prefetch=5))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    later = _loader(stored, labels, train=True, hflip=True, seed=3)
    later.set_epoch(1)
    assert not torch.equal(next(iter(later))[1], a[0][1])


@pytest.mark.parametrize("train", [True, False])
def test_the_cpu_view_step_gives_the_whole_batch_paths_values_to_the_bit(tmp_path: Path, train: bool) -> None:
    """On the CPU each image is viewed and normalised on a pool thread into reused memory; on a GPU the whole batch
    is viewed, then normalised. Both must give the same floats (the teacher-output cache keys the views, not the
    device)."""
    stored, _ = _store(tmp_path, _images(23))
    loader = _loader(stored, torch.arange(23), train=train, hflip=True, seed=3)
    loader.set_epoch(2)
    order = loader._indices()
    for k, (x, _) in enumerate(loader):
        pixels, _, positions = loader._read(order[4 * k : 4 * k + 4], None)
        assert torch.equal(x, loader._view(pixels, positions))


@pytest.mark.parametrize("train", [True, False])
def test_a_batch_kept_while_the_epoch_goes_on_is_never_overwritten_by_a_later_one(tmp_path: Path, train: bool) -> None:
    """The loader reuses batch memory on the CPU (:mod:`kdpipe.data.batch_buffers`): batches kept all at once, and
    views of them, must hold what they held when handed out."""
    stored, _ = _store(tmp_path, _images(23))
    labels = torch.arange(23)
    loader = _loader(stored, labels, train=train, hflip=True, seed=3)
    one_by_one = [(x.clone(), y) for x, y in loader]
    kept = list(loader)
    halves = [x[:2] for x, _ in loader]
    assert len(kept) == 6
    assert all(torch.equal(k[0], o[0]) for k, o in zip(kept, one_by_one, strict=True))
    assert all(torch.equal(h, o[0][:2]) for h, o in zip(halves, one_by_one, strict=True))
    assert len({x.data_ptr() for x, _ in kept}) == 6  # each kept batch its own memory


def test_batch_memory_is_reused_once_nobody_holds_it_and_never_while_a_view_of_it_lives() -> None:
    buffers = BatchBuffers(4, (3, 2, 2), keep=2)
    a = buffers.take(4)
    pointer = a.data_ptr()
    b = buffers.take(3)  # a is held: another buffer
    assert b.data_ptr() != pointer and b.shape == (3, 3, 2, 2)
    corner = a[1:, 0]
    del a
    assert buffers.take(4).data_ptr() not in (pointer, b.data_ptr())  # a view of a still lives: a third, not kept
    del corner
    assert buffers.take(2).data_ptr() == pointer  # nobody holds a's memory now
    assert buffers.take(5).shape == (5, 3, 2, 2)  # more than the batch size: its own memory
    assert len(buffers.kept) == 2


def test_a_view_thread_gets_one_openmp_thread_and_the_others_keep_theirs() -> None:
    torch.set_num_threads(2)
    try:
        with ThreadPoolExecutor(1, initializer=one_openmp_thread) as pool:
            assert pool.submit(torch.get_num_threads).result() == 1
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(torch.get_num_threads).result() == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(THREADS)


def test_each_rank_streams_its_own_equal_share_of_one_permutation(tmp_path: Path) -> None:
    stored, _ = _store(tmp_path, _images(23))
    labels = torch.arange(23)
    shares = [
        torch.cat([y for _, y in _loader(stored, labels, train=True, seed=3, rank=r, world_size=2)]) for r in (0, 1)
    ]
    assert len(shares[0]) == len(shares[1]) == 11  # 23 // 2 each: every rank the same count
    assert not set(shares[0].tolist()) & set(shares[1].tolist())


def test_an_image_streamed_in_a_subset_gets_the_view_it_gets_in_the_whole_split(tmp_path: Path) -> None:
    """The view's index is the image's position in the stored split, not in the transfer set drawn from it."""
    stored, _ = _store(tmp_path, _images(23))
    labels = torch.arange(23)
    whole = _loader(stored, labels, train=True, hflip=True, seed=3)
    whole.batch_size = 23
    x_whole, y_whole = next(iter(whole))
    part = _loader(stored.subset(torch.tensor([4, 9, 20])), labels[[4, 9, 20]], train=True, hflip=True, seed=3)
    for x, y in part:
        for k in range(len(y)):
            assert torch.equal(x[k], x_whole[(y_whole == y[k]).nonzero().item()])


def test_leaving_an_epoch_early_stops_the_reader_thread_and_an_error_in_it_reaches_the_caller() -> None:
    before = threading.active_count()
    for k in read_ahead(lambda k: k, 1000, 2):
        if k == 3:
            break
    assert threading.active_count() == before

    def fails(k: int) -> int:
        if k == 2:
            raise OSError("disk gone")
        return k

    with pytest.raises(OSError, match="disk gone"):
        list(read_ahead(fails, 5, 2))
