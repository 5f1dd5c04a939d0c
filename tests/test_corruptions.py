"""The corruption suite and the robustness figures, on real Fashion-MNIST images and a trained teacher."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from kdpipe.data.prepared import load_prepared
from kdpipe.evaluation.robustness import Robustness, measure, summary
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.promotion.gate import decide_thresholds
from kdpipe.training.runtime import images_loader, make_runtime

# Corruptions that draw from the generator; the others (a fixed blur, a level shift, ...) are the same for any seed.
RANDOM = {
    "elastic",
    "gaussian_noise",
    "impulse_noise",
    "motion_blur",
    "rotate",
    "shear",
    "shot_noise",
    "stripes",
    "translate",
}


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory, raw_root: Path) -> torch.Tensor:
    """1,000 real Fashion-MNIST test images."""
    from kdpipe.data.sources import load_source

    return load_source("fashion_mnist", str(raw_root)).test_x[:1000]


def test_the_suite_has_every_kind_of_shift_named_in_imagenet_c_and_mnist_c() -> None:
    assert len(CORRUPTIONS.names()) >= 12
    for kind in (
        ("gaussian_noise", "shot_noise", "impulse_noise"),
        ("gaussian_blur", "motion_blur"),
        ("brightness", "contrast"),
        ("jpeg", "pixelate"),
        ("elastic", "rotate", "shear", "scale", "translate"),
        ("stripes",),
    ):
        assert set(kind) <= set(CORRUPTIONS.names())
    for name in CORRUPTIONS.names():
        levels = re.findall(r"\d+(?:\.\d+)?", CORRUPTIONS.get(name).__doc__ or "")
        assert len(levels) >= 5, f"{name}: its docstring gives its five severity levels"


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_each_corruption_is_deterministic_and_only_random_ones_depend_on_the_seed(
    fashion: torch.Tensor, name: str
) -> None:
    first, again, other = (corrupt(fashion[:64], name, 3, seed) for seed in (0, 0, 1))
    assert torch.equal(first, again)
    assert (not torch.equal(first, other)) == (name in RANDOM)


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_each_corruption_changes_the_images_more_at_each_severity(fashion: torch.Tensor, name: str) -> None:
    change = [(corrupt(fashion, name, s).float() - fashion.float()).abs().mean().item() for s in SEVERITIES]
    assert change[0] > 0
    assert all(a < b for a, b in itertools.pairwise(change)), change


@pytest.mark.parametrize("channels, size", [(1, (28, 28)), (3, (40, 36))])
def test_one_and_three_channel_images_of_any_size_work(channels: int, size: tuple[int, int]) -> None:
    images = torch.randint(0, 256, (16, channels, *size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for name in CORRUPTIONS.names():
        out = corrupt(images, name, 5)
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert not torch.equal(out, images), name


def test_the_teachers_accuracy_falls_with_severity_on_average(
    make_params: Callable[..., Params], fashion: torch.Tensor
) -> None:
    params = make_params(**{"data.train_subset": 4000, "teacher.train.epochs": 3, "tracking.enabled": False})
    steps.prepare_data(params)
    steps.evaluate_teacher(params)
    data = load_prepared(params.paths.prepared)
    runtime = make_runtime(params.runtime)
    teacher = load_model(Path(params.paths.teacher) / MODEL_FILE)[0]
    images, labels = data.split("test")

    def predict(x: torch.Tensor) -> torch.Tensor:
        from kdpipe.evaluation.metrics import predict_logits

        return predict_logits(teacher, images_loader(x, data, runtime))

    results, _ = measure({"teacher": predict}, images, labels, "full", seed=0)
    robust = results["teacher"]
    by_severity = [sum(cells[s] for cells in robust.cells.values()) / len(robust.cells) for s in SEVERITIES]
    print(f"teacher clean top-1 {robust.clean:.4f}; mean corrupted top-1 by severity {by_severity}")
    assert robust.clean > by_severity[0]
    assert all(a > b for a, b in itertools.pairwise(by_severity)), by_severity


def test_corruption_errors_follow_the_imagenet_c_definitions() -> None:
    """Worked by hand: errors per severity, against the teacher's."""
    teacher = Robustness(clean=0.9, cells={"a": {1: 0.8, 2: 0.6}, "b": {1: 0.9, 2: 0.9}})
    student = Robustness(clean=0.8, cells={"a": {1: 0.6, 2: 0.4}, "b": {1: 0.7, 2: 0.5}})
    got = summary(student, teacher)
    # CE_a = (0.4 + 0.6) / (0.2 + 0.4) ; CE_b = (0.3 + 0.5) / (0.1 + 0.1)
    assert got["mce"] == pytest.approx(((1.0 / 0.6) + (0.8 / 0.2)) / 2)
    # relative: only 'a' degrades the teacher: ((0.4-0.2) + (0.6-0.2)) / ((0.2-0.1) + (0.4-0.1))
    assert got["relative_mce"] == pytest.approx(0.6 / 0.4)
    assert got["corrupted_top1"] == pytest.approx(0.55)
    assert got["robustness_retention"] == pytest.approx((0.55 / 0.8) / (0.8 / 0.9))
    flat = Robustness(clean=0.9, cells={"b": {1: 0.9}})
    assert math.isnan(summary(flat, flat)["relative_mce"]), "no corruption degrades the teacher: undefined, not 1"


def test_a_student_that_trails_the_teacher_under_corruption_fails_max_corruption_gap(
    make_params: Callable[..., Params],
) -> None:
    cfg = make_params(**{"validate.max_corruption_gap": 0.05}).validate_
    student = {"top1": 0.9, "latency_ms_batch1": 1.0, "corrupted_top1": 0.70}
    teacher = {"top1": 0.92, "corrupted_top1": 0.80}
    decision = decide_thresholds(student, teacher, cfg)
    assert not decision.passed
    assert decision.reasons == (
        "mean corrupted top-1 0.7000 trails the teacher's 0.8000 by 0.1000, over validate.max_corruption_gap 0.0500",
    )
    assert decide_thresholds({**student, "corrupted_top1": 0.76}, teacher, cfg).passed
    unmeasured = decide_thresholds({"top1": 0.9, "latency_ms_batch1": 1.0}, {"top1": 0.92}, cfg)
    assert unmeasured.reasons == (
        "validate.max_corruption_gap is set, but validate.corruptions is none: nothing to check it on",
    )
