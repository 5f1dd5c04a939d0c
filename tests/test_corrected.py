"""The confirmation's corrected intervals: the two-level bootstrap against its variance written out, Holm's
step-down against the rule worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kdpipe.study.corrected import Comparison, compare, holm, pack, replicates, unpack


def test_a_runs_test_hits_survive_the_hex_round_trip_of_any_length() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 160, 10_000):
        hits = rng.integers(0, 2, n).astype(np.int8)
        assert np.array_equal(unpack(pack(hits), n), hits)
    assert len(pack(np.ones(10_000))) == 2_500  # 10,000 test images: 2.5 kB of hex per run


def test_one_pair_resamples_images_only_with_the_variance_of_a_mean() -> None:
    """Var(D*) = var_pop(d) / n_i for one pair (the pair draw is then always that pair)."""
    rng = np.random.default_rng(1)
    diff = (rng.integers(0, 2, (1, 400)) - rng.integers(0, 2, (1, 400))).astype(np.int8)
    reps = replicates(diff, 10_000)
    assert reps.mean() == pytest.approx(diff.mean(), abs=0.002)
    assert reps.std() == pytest.approx(np.sqrt(diff.var() / 400), rel=0.05)


def test_pairs_that_differ_by_a_constant_resample_pairs_only_with_the_variance_of_their_mean() -> None:
    """Each pair's difference the same on every image: image draws change nothing, pair draws give
    var_pop(d_p) / n_p."""
    per_pair = np.array([1, 0, 1, 1, -1, 0, 1, 1])
    diff = np.repeat(per_pair[:, None], 50, axis=1).astype(np.int8)
    reps = replicates(diff, 10_000)
    assert reps.std() == pytest.approx(np.sqrt(per_pair.var() / 8), rel=0.05)


def test_identical_runs_show_nothing_and_a_student_right_where_the_other_is_wrong_shows_all() -> None:
    same = np.ones((5, 30), dtype=np.int8)
    nothing = compare("a", "b", same, same, 2_000)
    assert (nothing.mean, nothing.p) == (0.0, 1.0)
    everything = compare("a", "b", same, np.zeros_like(same), 2_000)
    assert everything.mean == 1.0 and everything.p == 1 / 2_000
    (verdict,) = holm([everything])
    assert verdict.claimed and (verdict.low, verdict.high) == (1.0, 1.0)
    (verdict,) = holm([nothing])
    assert not verdict.claimed and verdict.line().startswith("no difference claimed between a and b")


def _fixed(name: str, p: float) -> Comparison:
    """A comparison whose replicates lie well above zero, so only its p-value decides Holm's step."""
    return Comparison("srd", name, 8, 100, 0.01, p, np.random.default_rng(2).normal(0.01, 0.001, 4_000))


def test_holm_claims_in_order_of_p_until_the_first_p_above_alpha_over_the_remaining_count() -> None:
    """p 0.010, 0.040, 0.030, 0.020 at alpha 0.05, m 4: 0.010 <= 0.0125 yes; 0.020 <= 0.0167 no, so no later claim,
    though 0.030 and 0.040 would each pass an uncorrected test."""
    family = [_fixed("kd", 0.010), _fixed("fitnet", 0.040), _fixed("dkd", 0.030), _fixed("dist", 0.020)]
    verdicts = holm(family)
    assert [v.claimed for v in verdicts] == [True, False, False, False]
    assert [v.step for v in verdicts] == [1, 4, 3, 2]
    assert [v.level for v in verdicts] == pytest.approx([1 - 0.05 / 4, 1 - 0.05, 1 - 0.05 / 2, 1 - 0.05 / 3])
    loose = holm([_fixed("kd", 0.010), _fixed("fitnet", 0.024)])
    assert [v.claimed for v in loose] == [True, True]  # 0.024 <= 0.05 / 1 at the second step
