"""Operational data sets: the example set the script writes, how a set is read and checked, its shift
summary, and the per-set threshold. The whole-pipeline runs with a set are in test_cli (``kdpipe run``)
and test_kubeflow_local (``kdpipe pipeline run-local``)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, RESHOT_COUNT, write_example
from dvc_repo import dvc_repo
from kdpipe.config import OperationalSetConfig, ValidateConfig, load_params
from kdpipe.data import operational
from kdpipe.data.sources import load_source
from kdpipe.evaluation import robustness
from kdpipe.infra.errors import ConfigError, DataError
from kdpipe.promotion.gate import decide_thresholds
from servers import S3Store

MANIFEST_SHAPE = [1, 28, 28]


@pytest.fixture(scope="module")
def manifest(raw_root: Path) -> dict:
    raw = load_source("fashion_mnist", str(raw_root))
    return {"classes": raw.classes, "shape": MANIFEST_SHAPE, "mean": [0.2860], "std": [0.3530]}


def test_the_example_set_holds_reshot_test_images_under_the_training_classes(
    reshot: Path, raw_root: Path, manifest: dict
) -> None:
    raw = load_source("fashion_mnist", str(raw_root))
    assert sorted(p.name for p in reshot.iterdir()) == sorted(operational.folder_name(c) for c in raw.classes)
    assert "T-shirt_top" in {p.name for p in reshot.iterdir()}, "'/' in a class name cannot be a folder name"
    files = sorted(reshot.glob("*/*.png"))
    assert len(files) == RESHOT_COUNT
    for path in files[:20]:  # each file is named by its test index and filed under that image's class
        assert operational.folder_name(raw.classes[int(raw.test_y[int(path.stem)])]) == path.parent.name

    field = operational.load(OperationalSetConfig(name="reshot", source=str(reshot)), manifest)
    assert (
        field.kind == "imagefolder"
        and field.images.shape == (RESHOT_COUNT, 1, 28, 28)
        and field.images.dtype == torch.uint8
    )
    indices = torch.tensor(sorted(int(p.stem) for p in files))
    assert sorted(field.labels.tolist()) == sorted(raw.test_y[indices].tolist())
    shifted, clean = field.images.float().mean() / 255, raw.test_x[indices].float().mean() / 255
    assert shifted > clean + 0.05, "the second camera sees more light"
    assert (field.images.float() - raw.test_x[indices].float()).abs().mean() > 5, "the images were re-photographed"


def test_the_example_is_deterministic_and_the_seed_changes_it(
    reshot: Path, raw_root: Path, tmp_path: Path, manifest: dict
) -> None:
    again = write_example(tmp_path / "again", raw_root, RESHOT_COUNT)
    other = write_example(tmp_path / "other", raw_root, RESHOT_COUNT, seed=1)
    load = lambda root: operational.load(OperationalSetConfig(name="x", source=str(root)), manifest)  # noqa: E731
    assert load(again).digest == load(reshot).digest
    assert load(other).digest != load(reshot).digest


def test_a_wrong_class_list_is_one_line_naming_the_set_and_the_classes(
    reshot: Path, tmp_path: Path, manifest: dict
) -> None:
    wrong = tmp_path / "wrong"
    shutil.copytree(reshot, wrong)
    (wrong / "Sandal").rename(wrong / "Sandals")
    with pytest.raises(DataError) as err:
        operational.load(OperationalSetConfig(name="line4", source=str(wrong)), manifest)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"validate.operational 'line4' ({wrong}): ")
    assert "missing ['Sandal'], extra ['Sandals']" in message


def test_a_missing_directory_an_empty_set_and_a_corrupt_image_each_name_the_set(
    reshot: Path, tmp_path: Path, manifest: dict
) -> None:
    with pytest.raises(DataError, match=r"validate.operational 'gone' \(.*\): .* is not a directory"):
        operational.load(OperationalSetConfig(name="gone", source=str(tmp_path / "nothing")), manifest)
    empty = tmp_path / "empty"
    for folder in (p.name for p in reshot.iterdir()):
        (empty / folder).mkdir(parents=True)
    with pytest.raises(DataError, match=r"validate.operational 'empty' .*: no images"):
        operational.load(OperationalSetConfig(name="empty", source=str(empty)), manifest)
    broken = tmp_path / "broken"
    shutil.copytree(reshot, broken)
    victim = next(broken.glob("Bag/*.png"))
    victim.write_bytes(b"not a png")
    with pytest.raises(DataError, match=rf"validate.operational 'broken' .*: {victim}: cannot read the image"):
        operational.load(OperationalSetConfig(name="broken", source=str(broken)), manifest)


def test_an_s3_reference_is_fetched_and_read_like_the_local_set(
    reshot: Path, manifest: dict, seaweedfs: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real SeaweedFS (tests/servers.py): the ImageFolder is uploaded under a prefix and read back through it."""
    for key, value in seaweedfs.env().items():
        monkeypatch.setenv(key, value)
    client = seaweedfs.client()
    client.create_bucket(Bucket="field-data")
    for path in reshot.rglob("*.png"):
        client.upload_file(str(path), "field-data", f"line4/2026-11/{path.relative_to(reshot).as_posix()}")
    local = operational.load(OperationalSetConfig(name="local", source=str(reshot)), manifest)
    remote = operational.load(OperationalSetConfig(name="remote", source="s3://field-data/line4/2026-11"), manifest)
    assert remote.digest == local.digest and remote.kind == "imagefolder"
    with pytest.raises(DataError, match=r"validate.operational 'gone' s3://field-data/nothing: nothing is stored"):
        operational.load(OperationalSetConfig(name="gone", source="s3://field-data/nothing"), manifest)


def test_conform_resizes_and_converts_channels_both_ways() -> None:
    rgb = torch.randint(0, 256, (4, 3, 56, 40), dtype=torch.uint8)
    grey = operational.conform(rgb, (1, 28, 28))
    assert grey.shape == (4, 1, 28, 28) and grey.dtype == torch.uint8
    back = operational.conform(grey, (3, 32, 32))
    assert back.shape == (4, 3, 32, 32) and torch.equal(back[:, 0], back[:, 2])
    same = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(operational.conform(same, (1, 28, 28)), same)


def test_the_shift_summary_matches_its_definitions() -> None:
    images = torch.full((10, 1, 4, 4), 204, dtype=torch.uint8)  # 0.8 everywhere: std 0 (clamped to 1e-3)
    images[:, :, 0, 0] = 0
    pixels = images.float() / 255
    teacher = torch.tensor([[4.0, 0.0]] * 10)  # confident, always class 0
    student = torch.tensor([[0.0, 0.1]] * 3 + [[1.0, 0.0]] * 7)  # unsure; class 1 on 3 of 10
    reference = {"teacher": torch.tensor([[9.0, 0.0]] * 5), "student": torch.tensor([[3.0, 0.0]] * 5)}
    out = robustness.shift(images, [0.3], [0.35], {"teacher": teacher, "student": student}, reference)
    assert out["input_mean_shift"] == pytest.approx(float(pixels.mean()) - 0.3, abs=1e-6)
    assert out["input_std_shift"] == pytest.approx(float(pixels.std()) - 0.35, abs=1e-5)
    conf = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731 max-softmax of two logits z apart
    assert out["teacher_confidence_shift"] == pytest.approx(conf(4) - conf(9), abs=1e-6)
    assert out["student_confidence_shift"] == pytest.approx((3 * conf(0.1) + 7 * conf(1)) / 10 - conf(3), abs=1e-6)
    assert out["disagreement"] == pytest.approx(0.3)


def test_operational_min_top1_fails_a_student_below_it_and_names_the_set() -> None:
    cfg = ValidateConfig(
        min_top1=0.5,
        max_teacher_gap=None,
        max_latency_ms=None,
        operational=({"name": "line4", "source": "x"}, {"name": "line7", "source": "y"}),
        operational_min_top1={"line4": 0.8, "line7": 0.6},
    )
    student, teacher = {"top1": 0.9, "latency_ms_batch1": 1.0}, {"top1": 0.95}
    decision = decide_thresholds(student, teacher, cfg, {"line4": 0.75, "line7": 0.65})
    assert not decision.passed
    assert decision.reasons == (
        "top-1 0.7500 on operational set 'line4' is below validate.operational_min_top1.line4 0.8000",
    )
    assert decide_thresholds(student, teacher, cfg, {"line4": 0.85, "line7": 0.65}).passed
    unmeasured = decide_thresholds(student, teacher, cfg, {"line7": 0.65})
    assert unmeasured.reasons == (
        "validate.operational_min_top1.line4 is set, but operational set 'line4' was not measured",
    )


def test_params_reject_duplicate_and_unknown_set_names() -> None:
    params = REPO / "params.yaml"
    with pytest.raises(ConfigError, match="set names must be unique"):
        load_params(params, ["validate.operational=[{name: a, source: x}, {name: a, source: y}]"])
    with pytest.raises(ConfigError, match=r"operational_min_top1: b names no set in validate\.operational"):
        load_params(params, ["validate.operational=[{name: a, source: x}]", "validate.operational_min_top1={b: 0.5}"])
    with pytest.raises(ConfigError, match=r"validate.operational.0.name"):
        load_params(params, ["validate.operational=[{name: 'a b', source: x}]"])


def test_a_dvc_reference_reads_the_set_versioned_at_a_revision(reshot: Path, tmp_path: Path, manifest: dict) -> None:
    """Real git and DVC: the set is `dvc add`ed, committed, then replaced; the revision still reads the original."""
    repo = tmp_path / "repo"
    versioned_repo = dvc_repo(repo)
    shutil.copytree(reshot, repo / "field" / "line4")
    rev = versioned_repo.version("field/line4", "line 4 field data")
    next((repo / "field" / "line4" / "Bag").glob("*.png")).unlink()  # the working copy moves on

    versioned = operational.load(OperationalSetConfig(name="line4", source=f"dvc+{repo}@{rev}#field/line4"), manifest)
    local = operational.load(OperationalSetConfig(name="local", source=str(reshot)), manifest)
    assert versioned.digest == local.digest and len(versioned.labels) == RESHOT_COUNT
