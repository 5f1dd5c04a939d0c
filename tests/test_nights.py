"""Night after night (docs/nights.md): the data grows, the split stays put and the champion is measured on today's data.

Four nights of ``kdpipe run`` in one work directory against a real ``mlflow server``, on Fashion-MNIST
training images written as PNG class folders (a flat root: the stable split). Night 1 promotes v1. Nights 2
and 3 add images; their students (a weaker one, then a better one) are compared with champion v1
re-measured on each night's gate split, proven disjoint by the unchanged split fingerprint. Night 4 changes
data.val_fraction, so the fingerprint changes and nothing is proven: with gate.champion_on_new_data=refuse
the gate refuses in one line. The students differ by their epochs only (1 against 4 against 15), margins of
tens of points on a gate split of 100 to 250 images.
"""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from kdpipe.infra.files import DETAILS_FILE, PROMOTION_FILE, REPORT_FILE

KDPIPE = str(Path(sys.executable).with_name("kdpipe"))
FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
# (images per class, the student's epochs, extra -p overrides) for each night.
NIGHTS = (
    (60, 4, ()),
    (75, 1, ()),
    (90, 15, ()),
    (100, 1, ("data.val_fraction=0.3", "gate.champion_on_new_data=refuse")),
)


@dataclass(frozen=True)
class Night:
    """What one night's ``kdpipe run`` left: its output, promotion.json, details.json, report and image list."""

    stdout: str
    promotion: dict[str, Any]
    details: dict[str, Any]
    report: str
    manifest: dict[str, Any]
    images: dict[str, str]  # path -> split


def write_images(root: Path, per_class: int) -> None:
    """The first ``per_class`` training images of each class as PNGs; a later, larger call only adds files."""
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as fh:
        x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(y == k)[:per_class]:
            path = root / name / f"{i:05d}.png"
            if not path.exists():
                Image.fromarray(x[i]).save(path)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> tuple[list[Night], str]:
    """The four nights, run one after the other; returns them and the registered model's name."""
    work = tmp_path_factory.mktemp("nights")
    name = f"nights-{uuid.uuid4().hex[:8]}"
    params = {
        "data": {"source": "imagefolder", "root": str(work / "images"), "val_fraction": 0.25, "test_fraction": 0.1},
        "teacher": {"arch": "cnn8", "train": {"epochs": 10, "batch_size": 64}},
        "student": {"arch": "cnn8"},
        "train": {"batch_size": 64},
        "runtime": {"num_threads": 1, "progress": "off", "device": "cpu"},
        "validate": {
            "min_top1": 0.0,
            "max_teacher_gap": None,
            "max_latency_ms": None,
            "corruptions": "none",
            "deploy_format": "pytorch",
        },
        "export": {"enabled": False},
        "tracking": {"uri": mlflow_server, "experiment": name, "registered_model": name},
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    out = []
    for per_class, epochs, extra in NIGHTS:
        write_images(work / "images", per_class)
        overrides = [arg for o in (f"train.epochs={epochs}", *extra) for arg in ("-p", o)]
        done = subprocess.run(
            [KDPIPE, "run", "-c", "params.yaml", *overrides], cwd=work, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with open(work / "data/prepared/images.csv", newline="") as fh:
            images = {row["path"]: row["split"] for row in csv.DictReader(fh)}
        out.append(
            Night(
                done.stdout,
                json.loads((work / "artifacts/promotion" / PROMOTION_FILE).read_text()),
                json.loads((work / "artifacts/validation" / DETAILS_FILE).read_text()),
                (work / "artifacts/validation" / REPORT_FILE).read_text(),
                json.loads((work / "data/prepared/manifest.json").read_text()),
                images,
            )
        )
    return out, name


def remeasured(night: Night, version: str) -> str:
    """The line the gate and the report give for champion ``version`` re-measured on this night's val split."""
    sha, n_val = night.manifest["sha256"], night.manifest["splits"]["val"]
    return f"champion v{version} re-measured on today's gate split ({sha[:12]}, {n_val} images; split proven disjoint)"


def test_a_growing_set_keeps_every_image_in_its_split_so_todays_val_holds_none_of_yesterdays_training_images(
    nights: tuple[list[Night], str],
) -> None:
    (first, second, third, _), _ = nights
    assert [len(n.images) for n in (first, second, third)] == [600, 750, 900]
    fingerprints = {n.manifest["split"]["fingerprint"] for n in (first, second, third)}
    assert len(fingerprints) == 1 and first.manifest["split"]["scheme"] == "stable"
    for before, after in ((first, second), (second, third)):
        assert all(after.images[path] == split for path, split in before.images.items())
    trained_on = {path for path, split in first.images.items() if split == "train"}
    assert trained_on and not trained_on & {path for path, split in third.images.items() if split == "val"}


def test_night_one_promotes_v1(nights: tuple[list[Night], str]) -> None:
    first = nights[0][0].promotion
    assert first["promoted"] and first["version"] == "1"
    assert first["checks"][-1] == "no champion yet: nothing to beat"


def test_night_two_compares_a_weaker_student_with_the_champion_re_measured_on_its_gate_split(
    nights: tuple[list[Night], str], mlflow_server: str
) -> None:
    from mlflow import MlflowClient

    (_, second, *_), name = nights
    record, gate = second.promotion, second.details["gate"]
    assert not record["promoted"] and record["version"] == "2" and record["compared_with"] == "1"
    assert f"pass: {remeasured(second, '1')}" in record["checks"]
    champion_top1, student_top1 = gate["champion"]["top1"], gate["student"]["top1"]
    assert record["reasons"] == [
        f"top-1 {student_top1:.4f} does not beat the champion v1 ({champion_top1:.4f}) re-measured on today's gate "
        f"split: {student_top1 - champion_top1:+.4f}"
    ]
    assert "stays challenger, champion stays v1" in second.stdout
    assert f"Champion: {remeasured(second, '1')}" in second.report
    assert gate["champion_compared_on"] == {
        "data_sha256": second.manifest["sha256"],
        "images": second.manifest["splits"]["val"],
        "champion_validated_on": nights[0][0].manifest["sha256"],
    }
    tags = MlflowClient(mlflow_server).get_model_version(name, "2").tags
    assert tags["kdpipe.promotion.compared_on"] == second.manifest["sha256"]
    assert tags["kdpipe.promotion.compared_images"] == str(second.manifest["splits"]["val"])
    assert tags["kdpipe.split_fingerprint"] == second.manifest["split"]["fingerprint"]
    assert json.loads(tags["kdpipe.classes"]) == sorted(CLASSES)


def test_night_three_promotes_a_better_student_over_the_champion_re_measured_on_its_gate_split(
    nights: tuple[list[Night], str],
) -> None:
    third = nights[0][2]
    record = third.promotion
    assert record["promoted"] and record["version"] == "3" and record["compared_with"] == "1"
    assert f"pass: {remeasured(third, '1')}" in record["checks"]
    assert third.details["gate"]["student"]["top1"] > third.details["gate"]["champion"]["top1"]


def test_a_champion_whose_split_is_not_proven_disjoint_is_refused_in_one_line_with_refuse(
    nights: tuple[list[Night], str],
) -> None:
    """Night 4 changes data.val_fraction: a new fingerprint, so nothing proves v3 never trained on today's val."""
    (*_, third, fourth), _ = nights
    old, new = third.manifest, fourth.manifest
    assert old["split"]["fingerprint"] != new["split"]["fingerprint"]
    record = fourth.promotion
    assert not record["promoted"] and record["compared_with"] == "3"
    assert record["reasons"] == [
        f"champion v3 was validated on data {old['sha256'][:12]}, the student on {new['sha256'][:12]}, and today's "
        "gate split is not proven free of the images the champion trained on (the split fingerprint changed since "
        f"champion v3 ({old['split']['fingerprint']} -> {new['split']['fingerprint']})): "
        "gate.champion_on_new_data is refuse, so the two are not compared"
    ]
    assert f"Champion: {record['reasons'][0]}\n" in fourth.report
    assert fourth.details["champion"] is None and "champion_compared_on" not in fourth.details["gate"]
