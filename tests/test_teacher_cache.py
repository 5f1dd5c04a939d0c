"""The teacher-output cache on real Fashion-MNIST runs: a replayed float32 run is bit-identical to a
live one, any change of what decides the views or the teacher is a miss, and the fill step, the
budget and ``require`` behave as documented. Also the global-batch semantics under DDP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.infra.errors import ConfigError, KdpipeError
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.teacher.cache import TeacherCache, cache_key
from kdpipe.training.distributed import per_rank_batch
from kdpipe.training.runtime import Runtime, student_views


@pytest.fixture
def base(make_params: Callable[..., Params]) -> Callable[..., Params]:
    """A small real set-up with its teacher trained: 2 epochs of srd on 600 images."""

    def factory(**overrides: object) -> Params:
        return make_params(
            **{
                "data__train_subset": 800,
                "data__val_size": 200,
                "data__test_subset": 200,
                "train__epochs": 2,
                "train__batch_size": 64,
                "tracking__enabled": False,
                **overrides,
            }
        )

    params = factory()
    steps.prepare_data(params)
    steps.evaluate_teacher(params)
    return factory


def _student(params: Params) -> dict[str, torch.Tensor]:
    return load_model(Path(params.paths.student) / MODEL_FILE)[0].state_dict()


def _cache_files(params: Params) -> list[Path]:
    return sorted(Path(params.paths.teacher_cache).rglob("epoch*.pt"))


@pytest.mark.parametrize("method", ["srd", "kd", "fitnet", "dkd", "vkd"])  # lskd and dist read what kd reads
def test_a_float32_replay_trains_the_bit_identical_student(base: Callable[..., Params], method: str) -> None:
    live = base(method__name=method, cache__mode="off")
    steps.distill(live)
    expected = _student(live)
    assert _cache_files(live) == []

    recording = base(method__name=method)  # auto: nothing cached yet, so it trains live and records
    steps.distill(recording)
    assert len(_cache_files(recording)) == 2
    assert all(torch.equal(expected[k], v) for k, v in _student(recording).items()), "recording changed the run"

    replay = base(method__name=method, cache__mode="require")
    steps.distill(replay)
    replayed = _student(replay)
    assert replayed.keys() == expected.keys()
    assert all(torch.equal(expected[k], v) for k, v in replayed.items()), "the replayed student differs"


def test_every_key_change_is_a_miss(base: Callable[..., Params]) -> None:
    params = base()
    data = load_prepared(params.paths.prepared)
    cpu = Runtime(device=torch.device("cpu"))
    key = cache_key(params, data, "teacher-a", 1, cpu)
    directory = TeacherCache(Path(params.paths.teacher_cache), key).directory
    other_data = load_prepared(params.paths.prepared).manifest | {"sha256": "0" * 64}
    changes = {
        "teacher": cache_key(params, data, "teacher-b", 1, cpu),
        "data": cache_key(params, type(data)(data.tensors, other_data), "teacher-a", 1, cpu),
        "view seed": cache_key(base(train__view_seed=7), data, "teacher-a", 1, cpu),
        "crop padding": cache_key(base(data__crop_padding=4), data, "teacher-a", 1, cpu),
        "transfer set": cache_key(base(train__subset=300), data, "teacher-a", 1, cpu),
        "sample seed": cache_key(base(data__seed=1), data, "teacher-a", 1, cpu),
        "batch size": cache_key(base(train__batch_size=32), data, "teacher-a", 1, cpu),
        "epochs": cache_key(base(train__epochs=3), data, "teacher-a", 1, cpu),
        "dtype": cache_key(base(cache__dtype="float16"), data, "teacher-a", 1, cpu),
        "world size": cache_key(params, data, "teacher-a", 2, cpu),
        # the views' generator lives on the loader's device; bf16 autocast changes the teacher's outputs
        "device": cache_key(params, data, "teacher-a", 1, Runtime(device=torch.device("cuda"))),
        "precision": cache_key(params, data, "teacher-a", 1, Runtime(device=torch.device("cuda"), amp=True)),
    }
    for what, changed in changes.items():
        assert changed != key, what
        assert TeacherCache(Path(params.paths.teacher_cache), changed).directory != directory, what
    assert len({TeacherCache(Path("x"), k).directory for k in changes.values()}) == len(changes)
    assert cache_key(base(train__seed=5, train__view_seed=0), data, "teacher-a", 1, cpu) == key, (
        "the student's init seed is not part of the views"
    )


def test_a_replay_whose_views_moved_is_an_error_not_another_images_teacher(base: Callable[..., Params]) -> None:
    params = base(cache__mode="require")
    steps.fill_teacher_cache(params)
    first = _cache_files(params)[0]
    blob = torch.load(first)
    blob["labels"] = blob["labels"].roll(1)  # as if the recorded views were in another order
    torch.save(blob, first)
    with pytest.raises(KdpipeError, match=r"the loader's views differ from the recorded ones at view 0"):
        steps.distill(params)
    blob["labels"] = blob["labels"].roll(-1)[:-64]  # and as if it held one batch fewer
    blob["features"], blob["logits"] = blob["features"][:-64], blob["logits"][:-64]
    torch.save(blob, first)
    with pytest.raises(KdpipeError, match=r"holds 536 views, but epoch0000-rank0.json says 600"):
        steps.distill(params)
    index = first.with_name("epoch0000-rank0.json")
    index.write_text(json.dumps({"parts": [536]}))  # the index agreeing: an epoch recorded short
    with pytest.raises(KdpipeError, match="holds fewer views than the loader yields"):
        steps.distill(params)


def test_the_fill_step_then_require_and_a_miss_after_a_change(
    base: Callable[..., Params], capsys: pytest.CaptureFixture[str]
) -> None:
    from kdpipe.cli import main
    from kdpipe.kubeflow.params import dump_params

    params = base(cache__mode="require")
    with pytest.raises(KdpipeError, match=r"cache.mode is require, but .* lacks epoch\(s\) \[1, 2\]"):
        steps.distill(params)
    params_file = Path(params.paths.prepared).parent / "params.yaml"
    params_file.write_text(dump_params(params))
    assert main(["teacher-cache", "-c", str(params_file)]) == 0
    assert "recorded 2 epoch file(s)" in capsys.readouterr().out
    assert len(_cache_files(params)) == 2
    steps.distill(params)  # require: every epoch cached

    moved = base(cache__mode="require", train__view_seed=3)
    with pytest.raises(KdpipeError, match="lacks epoch"):
        steps.distill(moved)
    tiny = base(cache__mode="require", train__view_seed=3, cache__max_gb=1e-6)
    with pytest.raises(KdpipeError, match=r"over cache.max_gb 1e-06; raise it, or use cache.dtype: float16"):
        steps.fill_teacher_cache(tiny)


def test_a_float16_cache_holds_the_teacher_to_half_precision_and_trains_a_comparable_student(
    base: Callable[..., Params],
) -> None:
    """float16 is not exact: its rows match float32's to half precision, and the student it trains stays
    close in accuracy (the README reports the difference on the default budget)."""
    full, half = base(cache__mode="require"), base(cache__dtype="float16", cache__mode="require")
    steps.fill_teacher_cache(full)
    steps.fill_teacher_cache(half)
    first = {}
    for path in _cache_files(full):  # both caches, two epochs each: compare epoch 1 across the two dtypes
        blob = torch.load(path)
        if path.name.startswith("epoch0000"):
            first[blob["features"].dtype] = blob["features"].float()
    f32, f16 = first[torch.float32], first[torch.float16]
    assert torch.allclose(f16, f32, rtol=1e-3, atol=1e-3) and not torch.equal(f16, f32)
    accuracy = {}
    for name, params in (("float32", full), ("float16", half)):
        accuracy[name] = steps.distill(params)["final_val_acc"]
    assert abs(accuracy["float32"] - accuracy["float16"]) < 0.05, accuracy


def test_train_batch_size_is_the_global_batch_under_ddp(base: Callable[..., Params]) -> None:
    params = base(train__batch_size=64)
    data = load_prepared(params.paths.prepared)
    runtime = Runtime(device=torch.device("cpu"))
    for world_size in (1, 2, 4):
        shards = [student_views(data, params, runtime, rank, world_size) for rank in range(world_size)]
        assert all(s.batch_size * world_size == 64 for s in shards)
        first = [next(iter(s))[1] for s in shards]
        assert sum(len(b) for b in first) == 64
    assert per_rank_batch(256, 8) == 32
    with pytest.raises(ConfigError, match=r"train\.batch_size: 100 does not divide across 3 ranks"):
        per_rank_batch(100, 3)


def test_the_budget_evicts_the_least_recently_written_key_first(base: Callable[..., Params]) -> None:
    first = base()
    steps.fill_teacher_cache(first)
    (old,) = {p.parent for p in _cache_files(first)}
    one_key = sum(f.stat().st_size for f in old.iterdir())
    second = base(train__view_seed=9, cache__max_gb=1.5 * one_key / 1e9)  # room for one key, not two
    steps.fill_teacher_cache(second)
    assert not old.exists(), "the older key was kept beyond cache.max_gb"
    assert len(_cache_files(second)) == 2
