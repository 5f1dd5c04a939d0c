"""A team's images at 224 px through the prepared store on disk, and small sets through memory as before.

The images are real: Fashion-MNIST training images, coloured and upsampled to 320 x 240 PNGs in class folders,
as a line camera might hand them over (written once per module). The store must hold exactly what decoding each
file alone gives, catch a changed byte, decode the same in worker processes, carry a whole ``kdpipe run``, and
replay the teacher's outputs so exactly that the student is bit-identical. The in-memory path must train the very
student it trained before the store existed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdpipe import steps
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.data.decoding import decode
from kdpipe.data.image_record import IMAGES_FILE
from kdpipe.data.operational import folder_name
from kdpipe.data.prepared import MANIFEST_FILE, load_prepared
from kdpipe.data.sources import load_mnist_like
from kdpipe.data.store import STORE_DIR, StoredImages
from kdpipe.data.user_images import uses_store
from kdpipe.infra.errors import DataError
from kdpipe.kubeflow.params import dump_params
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.teacher import cache_store

PER_CLASS = 24  # 240 images
GOLDEN = Path(__file__).parent / "golden" / "in_memory_student"
SIZE, STORED = 224, 256


def _classes_of(raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    raw = load_mnist_like("fashion_mnist", raw_dir)
    return raw.train_x[:1000], raw.train_y[:1000], raw.classes


@pytest.fixture(scope="module")
def line_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``PER_CLASS`` images of each class as 320 x 240 RGB PNGs (three channels from one grey frame)."""
    base = tmp_path_factory.mktemp("line-camera")
    images, labels, classes = _classes_of(base / "raw")
    counts: dict[int, int] = defaultdict(int)
    for image, label in zip(images, labels.tolist(), strict=True):
        if counts[label] >= PER_CLASS:
            continue
        counts[label] += 1
        grey = image[0].numpy()
        rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
        folder = base / "set" / folder_name(classes[label])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).resize((320, 240), Image.BILINEAR).save(folder / f"frame{counts[label]:03d}.png")
    return base / "set"


def _streamed(make_params: Callable[..., Params], root: Path, **overrides: object) -> Params:
    streamed = {
        "data__source": "imagefolder",
        "data__root": str(root),
        "data__image_size": SIZE,
        "data__resize": "shorter_side",
        "data__store": "disk",
        "data__train_subset": None,
        "data__test_subset": None,
        "data__val_size": 5000,
        "teacher__arch": "cnn8",
        "teacher__train__batch_size": 32,
        "train__batch_size": 32,
        "tracking__enabled": False,
    }
    return make_params(**{**streamed, **overrides})


def test_the_store_holds_each_image_as_decoding_its_file_alone_gives(
    line_images: Path, make_params: Callable[..., Params]
) -> None:
    params = _streamed(make_params, line_images)
    manifest = steps.prepare_data(params)
    assert manifest["shape"] == [3, SIZE, SIZE] and manifest["store"]["shape"] == [3, STORED, STORED]
    assert sum(manifest["splits"].values()) == 10 * PER_CLASS
    data = load_prepared(params.paths.prepared)
    with open(Path(params.paths.prepared) / IMAGES_FILE, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    images, labels = data.split("train")
    assert isinstance(images, StoredImages) and len(images) == len(rows)
    for k in (0, 1, len(rows) // 2, len(rows) - 1):
        alone = decode((line_images / rows[k]["path"]).read_bytes(), STORED, "shorter_side")
        assert torch.equal(images.read([k])[0], torch.from_numpy(alone))
        assert data.classes[int(labels[k])] == rows[k]["label"]


def test_decoding_in_worker_processes_writes_the_same_store(
    line_images: Path, make_params: Callable[..., Params], tmp_path: Path
) -> None:
    alone = steps.prepare_data(_streamed(make_params, line_images, data__workers=0))
    spread = _streamed(make_params, line_images, data__workers=2, paths__prepared=str(tmp_path / "w"))
    assert steps.prepare_data(spread)["sha256"] == alone["sha256"]


def test_a_byte_flipped_in_a_shard_is_caught_and_named_by_the_next_step(
    line_images: Path, make_params: Callable[..., Params]
) -> None:
    params = _streamed(make_params, line_images)
    steps.prepare_data(params)
    store = Path(params.paths.prepared) / STORE_DIR
    shard = store / "train-00000.u8"
    content = bytearray(shard.read_bytes())
    content[12345] ^= 0x10
    shard.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"train-00000\.u8: content does not match its sha256"):
        load_prepared(params.paths.prepared)
    manifest = json.loads((Path(params.paths.prepared) / MANIFEST_FILE).read_text())
    manifest["store"]["splits"]["train"]["shards"][0]["sha256"] = hashlib.sha256(content).hexdigest()
    (Path(params.paths.prepared) / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="the shard hashes in the manifest do not match its sha256"):
        load_prepared(params.paths.prepared)


def _inodes(prepared: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in (prepared / STORE_DIR).glob("*.u8")}


def test_a_night_that_adds_images_keeps_yesterdays_shards_and_writes_only_the_new_images(
    line_images: Path, make_params: Callable[..., Params], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = sorted(line_images.rglob("*.png"))
    yesterdays = [f for f in frames if int(f.stem.removeprefix("frame")) <= 20]  # 20 of each class's 24
    root = tmp_path / "grows"
    for f in yesterdays:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
    params = _streamed(make_params, root)
    first = steps.prepare_data(params)
    before = _inodes(Path(params.paths.prepared))
    for f in set(frames) - set(yesterdays):  # tonight: 40 more
        shutil.copy(f, root / f.parent.name / f.name)
    with caplog.at_level(logging.INFO, logger="kdpipe"):
        second = steps.prepare_data(params)
    assert "yesterday's store holds 200 of today's 240 images; writing the 40 new ones in new shards" in caplog.text
    after = _inodes(Path(params.paths.prepared))
    assert all(after[name] == inode for name, inode in before.items())  # the same files, not rewritten
    assert len(after) == len(before) + 3  # one new shard per split
    assert sum(second["splits"].values()) == 240 and second["sha256"] != first["sha256"]
    data = load_prepared(params.paths.prepared)  # verified
    with open(Path(params.paths.prepared) / IMAGES_FILE, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    images, labels = data.split("train")
    assert len(rows) == len(images) and isinstance(images, StoredImages)
    last = len(rows) - 1  # a new image, in the new train shard
    alone = decode((root / rows[last]["path"]).read_bytes(), STORED, "shorter_side")
    assert torch.equal(images.read([last])[0], torch.from_numpy(alone))
    assert data.classes[int(labels[last])] == rows[last]["label"]

    (root / rows[0]["path"]).unlink()  # an image gone: the whole store is written again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kdpipe"):
        steps.prepare_data(params)
    assert "writing the whole store (1 of yesterday's images are gone, moved or rewritten)" in caplog.text
    assert not set(_inodes(Path(params.paths.prepared)).values()) & set(after.values())


def test_auto_streams_only_a_set_whose_decoded_images_pass_in_memory_max_gb(make_params: Callable[..., Params]) -> None:
    data = make_params(data__image_size=SIZE, data__in_memory_max_gb=1.0).data
    assert not uses_store(data, 6000, 3)  # 6000 x 3 x 224 x 224 = 0.90 GB
    assert uses_store(data, 7000, 3)  # 1.05 GB
    assert uses_store(data.model_copy(update={"store": "disk"}), 10, 1)
    assert not uses_store(data.model_copy(update={"store": "memory"}), 10**7, 3)


def test_a_whole_kdpipe_run_streams_the_store(
    line_images: Path, make_params: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prepare, teacher, distill with the cache recording, validation with the corruption suite part by part,
    the ONNX export and int8 on the centre crops, and the registry: every step on the streamed path (at 64 px from
    a store at 74: the path is the one 224 px takes, at a fraction of the cost)."""
    params = _streamed(
        make_params,
        line_images,
        data__image_size=64,
        tracking__enabled=True,
        validate__corruptions="fast",
        validate__deploy_format="onnx",
        export__enabled=True,
        export__formats=["onnx"],
        export__repeats=20,
        export__warmup=1,
        export__calibration_size=32,
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(dump_params(params))
    assert main(["run", "-c", str(params_file)]) == 0
    out = capsys.readouterr().out
    assert "is the new champion" in out
    assert (Path(params.paths.validation) / "student_int8.onnx").exists()
    assert "15 corruptions at severities 3" in out


def test_a_float32_replay_on_the_streamed_path_trains_the_bit_identical_student(
    line_images: Path, make_params: Callable[..., Params], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 224 px, on a transfer set of 96 views with the cache's parts made small (40 views) so that every epoch
    spans three of them and batches straddle their edges."""
    monkeypatch.setattr(cache_store, "PART_VIEWS", 40)
    live = _streamed(make_params, line_images, train__epochs=2, train__subset=96, cache__mode="off")
    steps.prepare_data(live)
    steps.evaluate_teacher(live)
    steps.distill(live)
    expected = load_model(Path(live.paths.student) / MODEL_FILE)[0].state_dict()
    for mode in ("auto", "require"):  # auto records while training live; require replays, or fails
        cached = live.model_copy(update={"cache": live.cache.model_copy(update={"mode": mode})})
        steps.distill(cached)
        got = load_model(Path(cached.paths.student) / MODEL_FILE)[0].state_dict()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    parts = sorted(Path(live.paths.teacher_cache).rglob("*-part*.pt"))
    assert [len(torch.load(p)["labels"]) for p in parts] == [40, 40, 16] * 2


def test_the_in_memory_path_trains_the_student_it_trained_before_the_store(tmp_path: Path) -> None:
    """``tests/golden/in_memory_student/train.py`` (300 Fashion-MNIST PNGs at 32 px, a cnn8 teacher and student)
    in a fresh process at one thread; ``expected.json`` holds what the same script gave at kdpipe 8b0019e."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(GOLDEN / "train.py"), str(tmp_path)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    expected = json.loads((GOLDEN / "expected.json").read_text())
    assert got["data_sha256"] == expected["data_sha256"]
    assert got["student_sha256"] == expected["student_sha256"]
