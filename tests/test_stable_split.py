"""The split rules on their own: what decides a stable split, its fingerprint, groups, and auto's choice."""

from __future__ import annotations

import re

import pytest

from kdpipe.config import DataConfig
from kdpipe.data.stable_split import path_group, resolve, seeded_scheme, stable_scheme
from kdpipe.infra.errors import ConfigError


def test_each_split_takes_its_fraction_in_expectation() -> None:
    scheme = stable_scheme(
        DataConfig(val_fraction=0.2, test_fraction=0.1), "sha256 of file bytes", own_test=False, own_val=False
    )
    counts = {"train": 0, "val": 0, "test": 0}
    for i in range(20_000):
        counts[scheme.split_of(f"sha256:{i:064x}")] += 1
    assert abs(counts["test"] / 20_000 - 0.1) < 0.01 and abs(counts["val"] / 20_000 - 0.2) < 0.01


def test_a_source_with_its_own_test_split_sends_nothing_to_test() -> None:
    data = DataConfig(val_fraction=0.3)
    own_test = stable_scheme(data, "sha256 of file bytes", own_test=True, own_val=False)
    own_both = stable_scheme(data, "sha256 of file bytes", own_test=True, own_val=True)
    keys = [f"sha256:{i}" for i in range(2000)]
    assert {own_test.split_of(k) for k in keys} == {"train", "val"}
    assert {own_both.split_of(k) for k in keys} == {"train"}
    assert own_test.test_fraction is None and own_both.val_fraction is None, "unused fractions enter no fingerprint"


def test_the_fingerprint_changes_with_everything_that_decides_a_split_and_nothing_else() -> None:
    def fp(identity: str = "sha256 of file bytes", own_test: bool = False, **data: object) -> str:
        return stable_scheme(DataConfig(**data), identity, own_test=own_test, own_val=False).fingerprint

    base = fp()
    assert len(base) == 16 and re.fullmatch(r"[0-9a-f]{16}", base)
    changed = [fp(val_fraction=0.2), fp(test_fraction=0.2), fp(group_by="x"), fp(own_test=True), fp("sha256 of pixels")]
    assert len({base, *changed}) == 6
    assert fp(seed=7, image_size=64, channels=3, on_bad_image="skip") == base, "the seed does not salt the split"
    assert fp(own_test=True, test_fraction=0.3) == fp(own_test=True), "an unused test_fraction is left out"


def test_a_path_group_is_the_first_regex_group_else_the_whole_match() -> None:
    assert path_group(re.compile(r"part-(\d+)"), "Coat/part-17_3.png") == "17"
    assert path_group(re.compile(r"^[^/]+/cam\d"), "Coat/cam2/0001.png") == "Coat/cam2"
    with pytest.raises(ConfigError, match=r"data\.group_by 'part-\(\\\\d\+\)': does not match the image Coat/x\.png"):
        path_group(re.compile(r"part-(\d+)"), "Coat/x.png")


def test_auto_is_seeded_for_the_benchmark_sets_and_stable_for_a_teams_images() -> None:
    assert resolve(DataConfig()) == "seeded" and resolve(DataConfig(source="cifar10")) == "seeded"
    assert resolve(DataConfig(source="imagefolder")) == "stable" and resolve(DataConfig(source="manifest")) == "stable"
    assert resolve(DataConfig(split="stable")) == "stable"
    assert resolve(DataConfig(val_size=5500)) == "seeded"
    with pytest.raises(ConfigError, match=r"^data\.split: seeded draws data\.val_size images"):
        resolve(DataConfig(source="imagefolder", split="seeded"))
    with pytest.raises(ConfigError, match=r"^data\.group_by: groups apply to the stable split only"):
        resolve(DataConfig(group_by="x"))
    assert seeded_scheme(DataConfig()).record()["scheme"] == "seeded"
