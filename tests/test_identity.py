"""What makes two runs, teachers, cache keys or measurements the same, pinned to the values kdpipe stored before
identity was defined in one module (commit dea6fc5): checkpoints, trained teachers, teacher-cache directories and
study results made then must keep matching. The pinned digests were computed by that commit's own functions
(``StudentTrainConfig.identity``, ``teacher.cache.method_identity`` and ``cache_key``, ``teacher.source._fingerprint``,
``study.runner.training_fingerprint`` and ``measured``, the resume fingerprint of ``steps.student.distill``) on the
params and data below; nothing here recomputes them another way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kdpipe import identity
from kdpipe.config import Params, apply_overrides, params_from_dict
from kdpipe.identity import TeacherIdentity


@dataclass(frozen=True)
class Data:
    """A prepared data set as identity sees it: its content hash and manifest."""

    sha256: str
    manifest: dict[str, Any] = field(default_factory=dict)
    view_scheme: str | None = None  # None: in memory; the streamed store names its scheme
    image_size: int = 28


DATA = {"a": Data("a" * 64, {"hflip": False}), "b": Data("b" * 64, {"hflip": True})}
TEACHER_SHA256 = "t" * 64
WHERE = {"cpu": ("cpu", False), "cuda_amp": ("cuda", True)}  # device type, bf16 autocast

CASES: dict[str, list[str]] = {
    "defaults": [],
    "kd_moved_views": [
        "method.name=kd",
        "method.kd.temperature=4",
        "train.view_seed=3",
        "train.subset_seed=2",
        "cache.dtype=float16",
        "data.seed=1",
        "data.crop_padding=4",
        "train.epochs=3",
        "train.subset=500",
        "train.batch_size=64",
        "runtime.channels_last=false",
    ],
    "fitnet_other_teacher": [
        "method.name=fitnet",
        "method.fitnet.feat_weight=10",
        "teacher.arch=cnn64_fc1024",
        "teacher.train.epochs=5",
        "teacher.source=teachers/t.pt",
        "data.hflip=true",
        "student.arch=cnn8",
    ],
    "scratch_all_images": ["method.name=scratch", "train.subset=null", "train.seed=4"],
    "srd_ablation": [
        "method.srd.projector=mlp",
        "method.srd.norm=l2",
        "method.srd.distance=mse",
        "method.srd.alpha=2",
        "data.root=/data/x",
        "validate.corruptions=full",
        "export.enabled=false",
        "validate.deploy_format=pytorch",
        "method.kd.temperature=2",
    ],
}


@dataclass(frozen=True)
class Pinned:
    run: str
    teacher: dict[str, str]
    student: dict[tuple[str, int], str]
    cache_directory: dict[tuple[str, str], str]


PINNED: dict[str, Pinned] = {
    "defaults": Pinned(
        run="d3a27fe020a8dbf1",
        teacher={"a": "9938b872273c116e", "b": "3a2251ede4495ebc"},
        student={
            ("a", 1): "aa29f21577d645ab",
            ("a", 2): "476d8e3c0673db11",
            ("b", 1): "8ff918bd6ac781be",
            ("b", 2): "4b04843859672141",
        },
        cache_directory={
            ("a", "cpu"): "113e3a56ba83f3e6",
            ("a", "cuda_amp"): "1a7c2a5b4dd31c85",
            ("b", "cpu"): "0984602cf500a06d",
            ("b", "cuda_amp"): "72d5b5df0e3f8e79",
        },
    ),
    "fitnet_other_teacher": Pinned(
        run="e0e291305fef7289",
        teacher={"a": "b6ce084f1a2a205b", "b": "6ce192d83575af1c"},
        student={
            ("a", 1): "c3332131e9f1153a",
            ("a", 2): "ca70dbbfe699ee8a",
            ("b", 1): "88c615e176a3c61d",
            ("b", 2): "67ab4d9163dc299b",
        },
        cache_directory={
            ("a", "cpu"): "113e3a56ba83f3e6",
            ("a", "cuda_amp"): "1a7c2a5b4dd31c85",
            ("b", "cpu"): "0984602cf500a06d",
            ("b", "cuda_amp"): "72d5b5df0e3f8e79",
        },
    ),
    "kd_moved_views": Pinned(
        run="4d51cdaec2fcc943",
        teacher={"a": "e706643e988e0eaa", "b": "f55b21a4c298bfc3"},
        student={
            ("a", 1): "e4c7b199a72e83a4",
            ("a", 2): "b99db6af891830ec",
            ("b", 1): "cd84b07b10175ab1",
            ("b", 2): "8a4c31a83270f39e",
        },
        cache_directory={
            ("a", "cpu"): "a6b599d9f5c87e0c",
            ("a", "cuda_amp"): "5330537e1864bdb3",
            ("b", "cpu"): "41a53a40c6543c83",
            ("b", "cuda_amp"): "c795f4eccd92bcdb",
        },
    ),
    "scratch_all_images": Pinned(
        run="17717ff1d95235bd",
        teacher={"a": "9938b872273c116e", "b": "3a2251ede4495ebc"},
        student={
            ("a", 1): "bd05be09a3df5e58",
            ("a", 2): "142b87a7de5bbc29",
            ("b", 1): "96a890771bad3704",
            ("b", 2): "07b3d0ffced52aaa",
        },
        cache_directory={
            ("a", "cpu"): "7afa745c80b04a18",
            ("a", "cuda_amp"): "85190b883b27bc1c",
            ("b", "cpu"): "8358c00b157141f1",
            ("b", "cuda_amp"): "1cee5ddabaa4a762",
        },
    ),
    "srd_ablation": Pinned(
        run="22a7742c005928da",
        teacher={"a": "9938b872273c116e", "b": "3a2251ede4495ebc"},
        student={
            ("a", 1): "2927cc1758563f05",
            ("a", 2): "0c26d73a9c4475a1",
            ("b", 1): "b663e2b300a221d5",
            ("b", 2): "d3f39db59fa08674",
        },
        cache_directory={
            ("a", "cpu"): "113e3a56ba83f3e6",
            ("a", "cuda_amp"): "1a7c2a5b4dd31c85",
            ("b", "cpu"): "0984602cf500a06d",
            ("b", "cuda_amp"): "72d5b5df0e3f8e79",
        },
    ),
}


BEFORE_TUNING = [
    "train.lr=0.1",
    "train.weight_decay=0.0005",
    "method.srd.feat_weight=2.0",
    "method.kd.temperature=8.0",
    "method.fitnet.feat_weight=30.0",
    "method.fitnet.ce_weight=1.0",
]
"""The defaults the digests were pinned under, where the tuning of 2026-12-07 has since changed them: the pins are
about the functions, so the params stay those of the commit that computed them."""


def _params(case: str, *more: str) -> Params:
    return params_from_dict(apply_overrides(Params().to_dict(), [*BEFORE_TUNING, *CASES[case], *more]))


def _run(p: Params) -> str:
    return identity.run_fingerprint(
        data=p.data, teacher=p.teacher, student=p.student, method=p.method, cache=p.cache, train=p.train
    )


def _student(p: Params, data: Data, world_size: int) -> str:
    return identity.student_fingerprint(
        student=p.student,
        method=p.method,
        cache=p.cache,
        train=p.train,
        data_cfg=p.data,
        data=data,
        world_size=world_size,
    )


def _key(p: Params, data: Data, where: str, how: TeacherIdentity = identity.TODAYS_TEACHER) -> dict[str, Any]:
    device_type, amp = WHERE[where]
    return identity.cache_key(
        teacher_sha256=TEACHER_SHA256,
        data=data,
        data_cfg=p.data,
        train=p.train,
        cache=p.cache,
        world_size=1,
        device_type=device_type,
        amp=amp,
        channels_last=p.runtime.channels_last,
        how=how,
    )


@pytest.mark.parametrize("case", CASES)
def test_a_study_run_keeps_the_fingerprint_it_had_before(case: str) -> None:
    assert _run(_params(case)) == PINNED[case].run


@pytest.mark.parametrize("case", CASES)
def test_a_distill_checkpoint_keeps_the_resume_fingerprint_it_had_before(case: str) -> None:
    p = _params(case)
    got = {(d, ws): _student(p, DATA[d], ws) for d in DATA for ws in (1, 2)}
    assert got == PINNED[case].student


@pytest.mark.parametrize("case", CASES)
def test_a_trained_teacher_keeps_the_fingerprint_it_had_before(case: str) -> None:
    p = _params(case)
    assert {d: identity.teacher_fingerprint(p.teacher, p.data, DATA[d]) for d in DATA} == PINNED[case].teacher


@pytest.mark.parametrize("case", CASES)
def test_a_teacher_cache_keeps_the_directory_it_had_before(case: str) -> None:
    p = _params(case)
    got = {(d, w): identity.cache_directory(_key(p, DATA[d], w)) for d in DATA for w in WHERE}
    assert got == PINNED[case].cache_directory


def test_a_teacher_cache_key_holds_exactly_what_decides_the_outputs_in_the_order_key_json_lists_them() -> None:
    key = _key(_params("kd_moved_views"), DATA["b"], "cuda_amp")
    assert list(key.items()) == [
        ("teacher_sha256", TEACHER_SHA256),
        ("data_sha256", "b" * 64),
        ("view_seed", 3),
        ("epochs", 3),
        ("batch_size", 64),
        ("subset", 500),
        ("sample_seed", 2),
        ("crop_padding", 4),
        ("hflip", True),
        ("world_size", 1),
        ("device", "cuda"),
        ("amp", True),
        ("channels_last", False),
        ("dtype", "float16"),
    ]


def test_a_streamed_data_sets_cache_key_also_names_its_view_scheme_and_size_so_it_never_replays_in_memory_views() -> (
    None
):
    params = _params("kd_moved_views")
    streamed = Data("b" * 64, {"hflip": True}, view_scheme="rrc-splitmix64-v1", image_size=224)
    key = _key(params, streamed, "cpu")
    assert (key["views"], key["image_size"]) == ("rrc-splitmix64-v1", 224)
    assert identity.cache_directory(key) != identity.cache_directory(_key(params, DATA["b"], "cpu"))


def test_the_train_identity_leaves_a_null_subset_seed_out_but_keeps_one_that_is_set() -> None:
    assert identity.train_identity(_params("defaults").train) == {
        "epochs": 10,
        "subset": 10000,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.0005,
        "schedule": "cosine",
        "warmup_epochs": 0,
        "milestones": [],
        "gamma": 0.1,
        "seed": 0,
        "view_seed": None,
    }
    assert identity.train_identity(_params("defaults", "train.subset_seed=0").train)["subset_seed"] == 0
    assert identity.train_identity(_params("defaults", "train.subset_excludes=0").train)["subset_excludes"] == 0


def test_a_run_is_its_own_methods_settings_and_the_cache_dtype_nothing_of_another_method() -> None:
    p = _params("defaults")
    assert identity.method_identity(p.method, p.cache) == {
        "name": "srd",
        "srd": {
            "projector": "linear",
            "train_projector": True,
            "norm": "bn",
            "distance": "logsum",
            "alpha": 4.0,
            "feat_weight": 2.0,
            "kl_weight": 0.9,
            "ce_weight": 0.1,
            "temperature": 1.0,
        },
        "cache_dtype": "float32",
    }
    scratch = _params("scratch_all_images", "cache.dtype=float16")
    assert identity.method_identity(scratch.method, scratch.cache) == {"name": "scratch"}


def test_tuning_another_method_or_the_cache_mode_keeps_a_finished_run_and_its_checkpoint() -> None:
    p = _params("defaults", "method.kd.temperature=2", "method.fitnet.feat_weight=3", "cache.mode=off")
    assert _run(p) == PINNED["defaults"].run
    assert _student(p, DATA["a"], 1) == PINNED["defaults"].student[("a", 1)]
    assert _run(_params("defaults", "method.srd.alpha=3")) != PINNED["defaults"].run


def test_where_the_raw_data_lies_is_not_part_of_a_run_but_its_seed_is() -> None:
    assert _run(_params("defaults", "data.root=/somewhere/else")) == PINNED["defaults"].run
    assert _run(_params("defaults", "data.seed=1")) != PINNED["defaults"].run


def test_the_views_seed_defaults_to_the_student_seed_and_the_transfer_set_to_the_data_seed() -> None:
    p = _params("defaults", "train.seed=5", "data.seed=7")
    assert (identity.view_seed(p.train), identity.transfer_seed(p.data, p.train)) == (5, 7)
    q = _params("defaults", "train.seed=5", "train.view_seed=0", "data.seed=7", "train.subset_seed=1")
    assert (identity.view_seed(q.train), identity.transfer_seed(q.data, q.train)) == (0, 1)
    assert _key(q, DATA["a"], "cpu")["view_seed"] == 0, "the student's init seed is not part of the views"


def test_a_run_replays_the_cache_of_any_run_that_agrees_on_its_views() -> None:
    p = _params("kd_moved_views")
    assert identity.replayed_views(p.data, p.train) == {
        "view_seed": 3,
        "epochs": 3,
        "batch_size": 64,
        "subset": 500,
        "sample_seed": 2,
    }
    other_student = _params("kd_moved_views", "train.seed=9", "method.kd.temperature=1", "train.lr=0.05")
    assert identity.replayed_views(other_student.data, other_student.train) == identity.replayed_views(p.data, p.train)
    disjoint = _params("kd_moved_views", "train.subset_excludes=0")
    assert identity.replayed_views(disjoint.data, disjoint.train) == {
        **identity.replayed_views(p.data, p.train),
        "sample_excluding": 0,
    }


def test_a_teacher_read_and_fed_as_today_keeps_every_digest_whether_or_not_it_says_so() -> None:
    p = _params("defaults")
    spelled_out = TeacherIdentity(
        file_format="kdpipe", feature_layer="pooled", preprocessing="data", view_scheme="pad-crop-flip"
    )
    assert spelled_out.digest_fields() == {}
    assert identity.teacher_fingerprint(p.teacher, p.data, DATA["a"], spelled_out) == PINNED["defaults"].teacher["a"]
    key = _key(p, DATA["a"], "cpu", spelled_out)
    assert identity.cache_directory(key) == PINNED["defaults"].cache_directory[("a", "cpu")]


@pytest.mark.parametrize("changed", ["file_format", "feature_layer", "preprocessing", "view_scheme", "class_order"])
def test_a_teacher_read_or_fed_another_way_is_another_teacher_and_another_cache(changed: str) -> None:
    p = _params("defaults")
    other = TeacherIdentity(**{changed: "another"})
    assert other.digest_fields() == {changed: "another"}
    assert identity.teacher_fingerprint(p.teacher, p.data, DATA["a"], other) != PINNED["defaults"].teacher["a"]
    key = _key(p, DATA["a"], "cpu", other)
    assert key[changed] == "another"
    assert identity.cache_directory(key) != PINNED["defaults"].cache_directory[("a", "cpu")]


def test_a_teachers_version_names_how_it_was_made() -> None:
    assert identity.trained_teacher_version("9938b872273c116e") == "train:9938b872273c116e"
    assert identity.file_teacher_version("0123456789abcdef" * 4) == "sha256:0123456789abcdef"


def test_a_measurement_is_the_corruption_suite_and_the_int8_calibration_when_there_is_an_export() -> None:
    p, q = _params("defaults"), _params("srd_ablation")
    assert identity.measurement(p.validate_, p.export) == {
        "corruptions": "fast",
        "corruption_seed": 0,
        "int8_calibration": 512,
    }
    assert identity.measurement(q.validate_, q.export) == {
        "corruptions": "full",
        "corruption_seed": 0,
        "int8_calibration": None,
    }
