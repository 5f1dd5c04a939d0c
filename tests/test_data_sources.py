"""A team's own images: class folders and manifests of real images, split stably, channels kept, bad files named.

The images are Fashion-MNIST training images re-encoded as PNG class folders (written once per module
with PIL from Debian's files, read through kdpipe's own loader): real files a team could hand over.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from dvc_repo import dvc_repo
from kdpipe import steps
from kdpipe.config import params_from_dict
from kdpipe.data.image_record import IMAGES_FILE
from kdpipe.data.operational import folder_name
from kdpipe.data.prepared import MANIFEST_FILE, load_prepared
from kdpipe.data.sources import load_mnist_like
from kdpipe.infra.errors import ConfigError, DataError
from servers import S3Store

PER_CLASS, GROWN_PER_CLASS, SESSION = 30, 36, 5  # 300 images, then 20 % more; 5 frames a capture session
FASHION_MNIST_SHA256 = "db77f4e98dc2319ef92403029b6569fa2d463d3c61205b6eb9dd0c85b26acead"  # measured before 29


def _write_set(root: Path, images: torch.Tensor, labels: torch.Tensor, classes: list[str], per_class: int) -> Path:
    """The first ``per_class`` images of each class as ``<class>/s<session>_<n>.png``."""
    counts: dict[int, int] = defaultdict(int)
    for image, label in zip(images, labels.tolist(), strict=True):
        n = counts[label]
        if n >= per_class:
            continue
        counts[label] += 1
        folder = root / folder_name(classes[label])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"s{n // SESSION}_{n}.png")
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The flat set (300 images) and the same set grown by 20 % (60 more images, the 300 unchanged)."""
    base = tmp_path_factory.mktemp("own-images")
    raw = load_mnist_like("fashion_mnist", base / "raw")
    return {
        name: _write_set(base / name, raw.train_x[:2000], raw.train_y[:2000], raw.classes, n)
        for name, n in (("flat", PER_CLASS), ("grown", GROWN_PER_CLASS))
    }


def _params(out: Path, **data: Any) -> Any:
    return params_from_dict({"data": data, "tracking": {"enabled": False}, "paths": {"prepared": str(out)}})


def _prepare(out: Path, root: Path | str, source: str = "imagefolder", **data: Any) -> dict[str, Any]:
    return steps.prepare_data(_params(out, source=source, root=str(root), **data))


def _record(out: Path) -> dict[str, dict[str, str]]:
    with open(out / IMAGES_FILE, newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def _expected_split(key: str, val: float = 0.1, test: float = 0.1) -> str:
    """The documented rule, written out here: u from sha256("kdpipe-stable-split-v1" NUL key)."""
    u = int.from_bytes(hashlib.sha256(f"kdpipe-stable-split-v1\0{key}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_flat_root_of_class_folders_is_split_by_each_images_bytes(sets: dict[str, Path], tmp_path: Path) -> None:
    manifest = _prepare(tmp_path / "a", sets["flat"])
    record = _record(tmp_path / "a")
    assert len(record) == 10 * PER_CLASS and sum(manifest["splits"].values()) == 10 * PER_CLASS
    for path, row in record.items():
        assert row["sha256"] == hashlib.sha256((sets["flat"] / path).read_bytes()).hexdigest()
        assert row["split"] == _expected_split(f"sha256:{row['sha256']}"), path
    assert all(manifest["splits"][s] > 0 for s in ("train", "val", "test"))
    split = manifest["split"]
    assert split["scheme"] == "stable" and len(split["fingerprint"]) == 16
    assert split["val_fraction"] == 0.1 and split["test_fraction"] == 0.1 and split["own_test"] is False
    assert load_prepared(tmp_path / "a").split_fingerprint == split["fingerprint"]

    moved = _copy(sets["flat"], tmp_path / "elsewhere")
    (moved / "Bag" / "s0_0.png").rename(moved / "Bag" / "renamed.png")
    again = _prepare(tmp_path / "b", moved)
    by_sha = {row["sha256"]: row["split"] for row in _record(tmp_path / "b").values()}
    assert {row["sha256"]: row["split"] for row in record.values()} == by_sha, "moving or renaming moves no image"
    assert again["split"]["fingerprint"] == split["fingerprint"]
    assert _prepare(tmp_path / "c", sets["flat"])["sha256"] == manifest["sha256"], "the same data, the same split"


def test_adding_a_fifth_more_images_moves_no_image_between_splits(sets: dict[str, Path], tmp_path: Path) -> None:
    _prepare(tmp_path / "night1", sets["flat"])
    grown = _prepare(tmp_path / "night2", sets["grown"])
    before, after = _record(tmp_path / "night1"), _record(tmp_path / "night2")
    assert len(after) == 10 * GROWN_PER_CLASS and set(before) < set(after)
    assert {p: after[p]["split"] for p in before} == {p: row["split"] for p, row in before.items()}
    assert grown["split"]["fingerprint"] == load_prepared(tmp_path / "night1").split_fingerprint


def test_a_group_never_straddles_two_splits(sets: dict[str, Path], tmp_path: Path) -> None:
    """Groups by a path regex (the capture session in the file name) and by a manifest column."""
    _prepare(tmp_path / "regex", sets["flat"], group_by=r"^([^/]+/s\d+)_")
    rows = _record(tmp_path / "regex").values()
    sides: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        sides[row["group"]].add(row["split"])
        assert row["split"] == _expected_split(f"group:{row['group']}")
    assert len(sides) == 10 * PER_CLASS // SESSION and all(len(s) == 1 for s in sides.values())
    assert {s for split in sides.values() for s in split} == {"train", "val", "test"}

    listing = sets["flat"] / "camera.csv"
    with open(listing, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "camera"])
        for path in sorted(_record(tmp_path / "regex")):
            writer.writerow([path, path.split("/")[0], f"cam{int(path.split('_')[-1].removesuffix('.png')) % 7}"])
    try:
        manifest = _prepare(tmp_path / "column", listing, source="manifest", group_by="camera")
    finally:
        listing.unlink()
    cameras: dict[str, set[str]] = defaultdict(set)
    for row in _record(tmp_path / "column").values():
        cameras[row["group"]].add(row["split"])
    assert len(cameras) == 7 and all(len(s) == 1 for s in cameras.values())
    assert manifest["split"]["identity"] == "group" and manifest["split"]["group_by"] == "camera"


def test_greyscale_stays_one_channel_unless_data_channels_is_3(sets: dict[str, Path], tmp_path: Path) -> None:
    grey = _prepare(tmp_path / "grey", sets["flat"])
    rgb = _prepare(tmp_path / "rgb", sets["flat"], channels=3)
    assert grey["shape"] == [1, 28, 28] and rgb["shape"] == [3, 28, 28]
    one, three = load_prepared(tmp_path / "grey").split("train")[0], load_prepared(tmp_path / "rgb").split("train")[0]
    assert torch.equal(three, one.expand(-1, 3, -1, -1)), "grey repeated on each channel"
    resized = _prepare(tmp_path / "small", sets["flat"], image_size=16)
    assert resized["shape"] == [1, 16, 16]


def test_csv_and_json_lines_manifests_read_the_same_images_as_the_folders(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    """Paths are relative to the manifest's folder; the labels name the classes, so all three agree."""
    folders = _prepare(tmp_path / "folders", sets["flat"])
    paths = sorted(_record(tmp_path / "folders"))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "images").symlink_to(sets["flat"])
    with open(lists / "set.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "path"])
        writer.writerows([p.split("/")[0], f"images/{p}"] for p in reversed(paths))
    (lists / "set.jsonl").write_text(
        "".join(json.dumps({"path": f"images/{p}", "label": p.split("/")[0]}) + "\n" for p in paths)
    )
    from_csv = _prepare(tmp_path / "csv", lists / "set.csv", source="manifest")
    from_jsonl = _prepare(tmp_path / "jsonl", lists / "set.jsonl", source="manifest")
    assert from_csv["sha256"] == from_jsonl["sha256"] == folders["sha256"]
    assert from_csv["classes"] == folders["classes"] and from_csv["shape"] == [1, 28, 28]
    assert _record(tmp_path / "csv")["images/" + paths[0]]["split"] == _record(tmp_path / "folders")[paths[0]]["split"]


def _with_corrupt_png(sets: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    root = _copy(sets["flat"], tmp_path / "broken")
    bad = root / "Coat" / "truncated.png"
    bad.write_bytes((root / "Coat" / "s0_0.png").read_bytes()[:60])
    return root, bad


def test_on_bad_image_fail_names_the_file_and_leaves_prepared_data_untouched(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "prepared"
    _prepare(out, sets["flat"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    root, bad = _with_corrupt_png(sets, tmp_path)
    with pytest.raises(DataError) as info:
        _prepare(out, root)
    assert str(info.value).startswith(f"{bad}: cannot read the image") and "\n" not in str(info.value)
    assert "data.on_bad_image: skip" in str(info.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(
        DataError, match=r"^1 of 301 images cannot be read \(0\.3%\), more than data\.max_bad_fraction 0\.0"
    ):
        _prepare(out, root, on_bad_image="skip", max_bad_fraction=0.0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith(".prepared")] == [], "no staging"


def test_on_bad_image_skip_leaves_the_file_out_and_lists_it(
    sets: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, _ = _with_corrupt_png(sets, tmp_path)
    with caplog.at_level("WARNING", logger="kdpipe"):
        manifest = _prepare(tmp_path / "out", root, on_bad_image="skip")
    assert sum(manifest["splits"].values()) == 10 * PER_CLASS and manifest["skipped"] == 1
    row = _record(tmp_path / "out")["Coat/truncated.png"]
    assert row["status"] == "skipped" and row["split"] == "" and row["reason"]
    assert "1 of 301 images cannot be read and were left out" in caplog.text
    assert manifest["sha256"] == _prepare(tmp_path / "clean", sets["flat"])["sha256"]


def test_an_empty_class_folder_and_a_stray_file_get_one_line_each(sets: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(sets["flat"], tmp_path / "set")
    (root / "Bag" / "notes.txt").write_text("taken on line 4\n")
    (root / "Unlabelled").mkdir()
    (tmp_path / "params.yaml").write_text(
        f"data:\n  source: imagefolder\n  root: {root}\ntracking:\n  enabled: false\n"
        f"paths:\n  prepared: {tmp_path / 'prepared'}\n"
    )
    kdpipe = str(Path(sys.executable).with_name("kdpipe"))
    result = subprocess.run([kdpipe, "prepare"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"kdpipe: error: {root / 'Unlabelled'}: an empty class folder " + (
        "(no .png .jpg .jpeg .bmp .gif .tif .tiff .webp images); add images or remove it"
    )
    assert [line for line in lines[:-1] if "notes.txt" in line] and len(lines) == 2
    (root / "Unlabelled").rmdir()
    result = subprocess.run([kdpipe, "prepare"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "prepared" / MANIFEST_FILE).read_text())["splits"]["train"] > 0


def test_val_size_is_refused_under_the_stable_split(sets: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data\.val_size: 500 sizes the seeded split only.*set data\.val_fraction"):
        _prepare(tmp_path / "out", sets["flat"], val_size=500)


def test_the_fashion_mnist_default_keeps_its_split_bit_for_bit(raw_root: Path, tmp_path: Path) -> None:
    manifest = steps.prepare_data(
        params_from_dict(
            {
                "data": {"root": str(raw_root)},
                "tracking": {"enabled": False},
                "paths": {"prepared": str(tmp_path / "p")},
            }
        )
    )
    assert manifest["sha256"] == FASHION_MNIST_SHA256
    assert (
        manifest["split"]["scheme"] == "seeded"
        and load_prepared(tmp_path / "p", verify=False).split_fingerprint is None
    )
    record = _record(tmp_path / "p")
    assert len(record) == 70_000 and sum(row["split"] == "val" for row in record.values()) == 5000


def test_a_manifest_on_s3_and_a_pvc_root_read_the_same_images_as_the_local_set(
    sets: dict[str, Path], tmp_path: Path, seaweedfs: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real SeaweedFS (tests/servers.py): the images and their manifest under a prefix, fetched through data.root."""
    local = _prepare(tmp_path / "local", sets["flat"])
    for key, value in seaweedfs.env().items():
        monkeypatch.setenv(key, value)
    client = seaweedfs.client()
    client.create_bucket(Bucket="line-images")
    lines = ["path,label"]
    for path in sorted(sets["flat"].rglob("*.png")):
        rel = path.relative_to(sets["flat"]).as_posix()
        client.upload_file(str(path), "line-images", f"night1/{rel}")
        lines.append(f"{rel},{rel.split('/')[0]}")
    client.put_object(Bucket="line-images", Key="night1/set.csv", Body="\n".join(lines).encode())
    remote = _prepare(tmp_path / "s3", "s3://line-images/night1/set.csv", source="manifest")
    assert remote["sha256"] == local["sha256"] and remote["description"] == "manifest(s3://line-images/night1/set.csv)"
    assert _prepare(tmp_path / "pvc", f"pvc:{sets['flat']}")["sha256"] == local["sha256"]


def test_a_class_folder_root_versioned_with_dvc_reads_the_images_of_its_revision(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    """Real git and DVC: the set is ``dvc add``-ed at one revision and grown at the next; ``data.root``
    ``dvc+<repo>@<rev>#images`` reads the images of the revision it names."""
    repo = tmp_path / "repo"
    versioned_repo = dvc_repo(repo)
    revs = []
    for name in ("flat", "grown"):
        shutil.rmtree(repo / "images", ignore_errors=True)
        shutil.copytree(sets[name], repo / "images")
        revs.append(versioned_repo.version("images", f"images: {name}"))
    for name, rev in zip(("flat", "grown"), revs, strict=True):
        versioned = _prepare(tmp_path / f"dvc-{name}", f"dvc+{repo}@{rev}#images")
        assert versioned["sha256"] == _prepare(tmp_path / f"local-{name}", sets[name])["sha256"]
