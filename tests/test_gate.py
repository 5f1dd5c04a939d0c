"""The promotion rule on its own: thresholds, McNemar and the decision, with no MLflow and no server.

Expected outcomes are worked out by hand from the rule in kdpipe.promotion.gate's docstring; the exact
binomial p-values are computed here from the binomial formula, independently of scipy.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from kdpipe.config import GateConfig, ValidateConfig
from kdpipe.promotion.comparison import Basis, Comparison, compare
from kdpipe.promotion.gate import Scores, Thresholds, decide_gate, decide_thresholds, mcnemar

DATA = "a" * 64
OTHER = "b" * 64


def scores(correct: list[bool], sha: str = DATA) -> Scores:
    return Scores.from_predictions(torch.tensor(correct).long(), torch.ones(len(correct)).long(), sha)


def thresholds(*reasons: str) -> Thresholds:
    """The thresholds' verdict the gate reads first: passed when no reason is given."""
    return Thresholds(not reasons, reasons, 0.9, 0.01, 1.0, None, "pytorch")


def passed() -> Thresholds:
    return thresholds()


def same(version: str) -> Comparison:
    """Champion ``version`` validated on the student's own data."""
    return Comparison(version, same_data=True)


def exact_two_sided_p(b: int, c: int) -> float:
    """Two-sided exact binomial test at 1/2: twice the smaller tail, capped at 1."""
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_thresholds_pass_when_every_one_holds() -> None:
    verdict = decide_thresholds(
        {"top1": 0.90, "latency_ms_batch1": 1.0},
        {"top1": 0.93},
        ValidateConfig(min_top1=0.88, max_teacher_gap=0.05, max_latency_ms=2.0),
    )
    assert verdict.passed and verdict.reasons == ()
    assert verdict.teacher_gap == pytest.approx(0.03)


def test_each_failing_threshold_gives_its_own_reason() -> None:
    verdict = decide_thresholds(
        {"top1": 0.80, "latency_ms_batch1": 9.0},
        {"top1": 0.95},
        ValidateConfig(min_top1=0.88, max_teacher_gap=0.05, max_latency_ms=2.0),
    )
    assert not verdict.passed
    assert [r.split()[0] for r in verdict.reasons] == ["top-1", "gap", "latency"]
    assert "validate.min_top1 0.8800" in verdict.reasons[0]


def test_unset_thresholds_are_not_checked() -> None:
    verdict = decide_thresholds(
        {"top1": 0.5, "latency_ms_batch1": 1e6},
        {"top1": 1.0},
        ValidateConfig(min_top1=0.0, max_teacher_gap=None, max_latency_ms=None),
    )
    assert verdict.passed


def test_with_no_champion_passing_the_thresholds_is_enough() -> None:
    result = decide_gate(passed(), scores([True, False]), GateConfig())
    assert result.promote and result.checks[-1] == "no champion yet: nothing to beat"


def test_failed_thresholds_are_never_promoted_even_without_a_champion() -> None:
    result = decide_gate(thresholds("top-1 too low"), scores([True] * 4), GateConfig())
    assert not result.promote and result.failed == ["top-1 too low"]


FINGERPRINT = "0123456789abcdef"
CLASSES = ("shirt", "shoe", "bag")
YESTERDAY = Basis(DATA, FINGERPRINT, CLASSES)
TODAY = Basis(OTHER, FINGERPRINT, CLASSES)


def test_on_the_champions_own_data_its_split_and_classes_are_not_looked_at() -> None:
    """Same sha256: the validation's predictions are compared as ever, whatever the split or refuse setting say."""
    comparison = compare("4", Basis(DATA, None, None), Basis(DATA, None, CLASSES), "refuse")
    assert comparison == Comparison("4", same_data=True)
    result = decide_gate(
        passed(), scores([True] * 3 + [False]), GateConfig(), comparison, scores([True] * 2 + [False] * 2)
    )
    assert result.promote and result.checks[1] == f"pass: evaluated on the champion's data {DATA[:12]}"
    assert (result.data_sha256, result.images) == (DATA, 4)


def test_a_champion_with_todays_split_fingerprint_is_re_measured_on_todays_gate_split_as_proven_disjoint() -> None:
    comparison = compare("2", YESTERDAY, TODAY, "refuse")  # refuse plays no part: disjointness is proven
    assert comparison.scores_champion and comparison.unproven is None
    champion = scores([True] * 3 + [False] * 2, OTHER)
    worse = decide_gate(passed(), scores([True] * 2 + [False] * 3, OTHER), GateConfig(), comparison, champion)
    assert not worse.promote
    assert worse.checks[1] == (
        f"pass: champion v2 re-measured on today's gate split ({OTHER[:12]}, 5 images; split proven disjoint)"
    )
    assert worse.failed == [
        "top-1 0.4000 does not beat the champion v2 (0.6000) re-measured on today's gate split: -0.2000"
    ]
    better = decide_gate(passed(), scores([True] * 4 + [False], OTHER), GateConfig(), comparison, champion)
    assert better.promote and (better.data_sha256, better.images) == (OTHER, 5)


@pytest.mark.parametrize(
    ("champion", "today", "why"),
    [
        (Basis(DATA, None, CLASSES), TODAY, "champion v2 records no split fingerprint"),
        (YESTERDAY, Basis(OTHER, None, CLASSES), "today's data uses the seeded split (data.split)"),
        (
            Basis(DATA, "fedcba9876543210", CLASSES),
            TODAY,
            f"the split fingerprint changed since champion v2 (fedcba9876543210 -> {FINGERPRINT})",
        ),
        (Basis(DATA, FINGERPRINT, None), TODAY, "champion v2 records no class list"),
    ],
)
def test_an_unproven_split_is_rescored_with_rescore_and_the_line_says_it_is_not_proven_disjoint(
    champion: Basis, today: Basis, why: str
) -> None:
    comparison = compare("2", champion, today, "rescore")
    assert comparison.scores_champion and comparison.unproven == why
    result = decide_gate(
        passed(), scores([True] * 4 + [False], OTHER), GateConfig(), comparison, scores([True] * 3 + [False] * 2, OTHER)
    )
    assert result.promote
    assert result.checks[1] == (
        f"pass: champion v2 re-measured on today's gate split ({OTHER[:12]}, 5 images; not proven disjoint: {why}; "
        "gate.champion_on_new_data is rescore, and rescoring the champion on images it may have trained on can only "
        "favour it)"
    )


def test_an_unproven_split_with_refuse_is_one_line_naming_the_setting_and_the_champion_is_not_scored() -> None:
    comparison = compare("2", Basis(DATA, None, CLASSES), TODAY, "refuse")
    assert not comparison.scores_champion
    result = decide_gate(passed(), scores([True] * 5, OTHER), GateConfig(), comparison)
    assert not result.promote and result.images is None
    assert result.failed == [
        f"champion v2 was validated on data {DATA[:12]}, the student on {OTHER[:12]}, and today's gate split is not "
        "proven free of the images the champion trained on (champion v2 records no split fingerprint): "
        "gate.champion_on_new_data is refuse, so the two are not compared"
    ]


@pytest.mark.parametrize("setting", ["rescore", "refuse"])
def test_a_changed_class_set_is_never_rescored_and_the_line_names_the_classes(setting: str) -> None:
    today = Basis(OTHER, FINGERPRINT, ("shirt", "shoe", "coat", "hat"))
    comparison = compare("2", YESTERDAY, today, setting)
    result = decide_gate(passed(), scores([True] * 5, OTHER), GateConfig(), comparison)
    assert not comparison.scores_champion and not result.promote
    assert result.failed == [
        "the classes changed since champion v2 was validated (today's data adds 'coat', 'hat'; drops 'bag'): a "
        "changed class set is never rescored, so the two are not compared (serve the new classes under another "
        "tracking.registered_model)"
    ]
    reordered = compare("2", YESTERDAY, Basis(OTHER, FINGERPRINT, ("shoe", "shirt", "bag")), setting)
    assert reordered.refused is not None and "(same classes in another order)" in reordered.refused


def test_a_tie_keeps_the_champion() -> None:
    even = [True, False, True, False]
    result = decide_gate(passed(), scores(even), GateConfig(), same("1"), scores(even))
    assert not result.promote and "does not beat" in result.failed[0]


def test_a_gain_below_min_improvement_keeps_the_champion() -> None:
    student, champion = scores([True] * 52 + [False] * 48), scores([True] * 50 + [False] * 50)
    assert not decide_gate(passed(), student, GateConfig(min_improvement=0.03), same("1"), champion).promote
    assert decide_gate(passed(), student, GateConfig(min_improvement=0.01), same("1"), champion).promote


def test_the_gate_needs_the_champions_scores_when_the_data_match() -> None:
    with pytest.raises(ValueError, match="champion's scores on the student's gate split"):
        decide_gate(passed(), scores([True]), GateConfig(), same("1"), None)


def test_mcnemar_counts_discordant_pairs_and_gives_the_exact_p_value() -> None:
    student = torch.tensor([True] * 10 + [False] * 2 + [True] * 50)
    champion = torch.tensor([False] * 10 + [True] * 2 + [True] * 50)
    b, c, p = mcnemar(student, champion)
    assert (b, c) == (10, 2)
    assert p == pytest.approx(exact_two_sided_p(10, 2), rel=1e-9)
    assert p == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar(student, student)[2] == 1.0


def test_significance_refuses_a_better_top1_that_mcnemar_cannot_tell_apart() -> None:
    # 3 images only the student gets right, 1 only the champion: +2 images, p = 0.625.
    student = scores([True] * 3 + [False] + [True] * 96)
    champion = scores([False] * 3 + [True] + [True] * 96)
    gate = GateConfig(significance=0.05)
    result = decide_gate(passed(), student, gate, same("1"), champion)
    assert not result.promote and result.failed[0].startswith("McNemar: 3 images")
    assert decide_gate(passed(), student, GateConfig(), same("1"), champion).promote


def test_significance_promotes_a_clear_winner() -> None:
    student = scores([True] * 20 + [True] * 80)
    champion = scores([False] * 20 + [True] * 80)
    result = decide_gate(passed(), student, GateConfig(significance=0.05), same("1"), champion)
    assert result.promote and exact_two_sided_p(20, 0) < 0.05


def test_importing_the_gate_and_its_records_loads_no_mlflow() -> None:
    modules = "kdpipe.promotion.gate, kdpipe.promotion.decision, kdpipe.promotion.records"
    probe = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def labelled(predictions: list[int], labels: list[int], corrupted: float | None = None) -> Scores:
    return Scores.from_predictions(torch.tensor(predictions), torch.tensor(labels), DATA, corrupted)


def test_a_clean_win_that_loses_robustness_beyond_the_limit_stays_challenger() -> None:
    """Clean: 4/4 against 3/4. Corrupted: 0.60 against the champion's 0.70, a drop of 0.10 > 0.05."""
    student, champion = labelled([0, 1, 0, 1], [0, 1, 0, 1], 0.60), labelled([0, 1, 0, 0], [0, 1, 0, 1], 0.70)
    verdict = decide_gate(passed(), student, GateConfig(max_robustness_drop=0.05), same("3"), champion)
    assert not verdict.promote
    assert verdict.failed == [
        "mean corrupted top-1 0.6000 against the champion's 0.7000: a drop of +0.1000, limit "
        "gate.max_robustness_drop 0.0500"
    ]
    within = decide_gate(
        passed(), labelled([0, 1, 0, 1], [0, 1, 0, 1], 0.66), GateConfig(max_robustness_drop=0.05), same("3"), champion
    )
    assert within.promote
    unmeasured = decide_gate(
        passed(), labelled([0, 1, 0, 1], [0, 1, 0, 1]), GateConfig(max_robustness_drop=0.05), same("3"), champion
    )
    assert not unmeasured.promote and "was not measured" in unmeasured.failed[0]


def test_a_per_class_regression_blocks_promotion_even_with_a_better_top1() -> None:
    """Class 0: the champion gets 2/2, the student 1/2 (a drop of 0.5); class 1: 1/4 against 4/4. Top-1 5/6 > 3/6."""
    labels = [0, 0, 1, 1, 1, 1]
    student, champion = labelled([0, 1, 1, 1, 1, 1], labels), labelled([0, 0, 1, 0, 0, 0], labels)
    verdict = decide_gate(passed(), student, GateConfig(max_class_drop=0.2), same("3"), champion)
    assert student.top1 > champion.top1 and not verdict.promote
    assert verdict.failed == [
        "largest per-class recall drop against the champion: class 0, 1.0000 -> 0.5000 "
        "(+0.5000), limit gate.max_class_drop 0.2000"
    ]
    assert decide_gate(passed(), student, GateConfig(max_class_drop=0.5), same("3"), champion).promote


def test_the_deploy_formats_memory_and_int8_refusal_each_give_their_reason() -> None:
    cfg = ValidateConfig(min_top1=0.5, max_teacher_gap=None, max_latency_ms=1.0, max_memory_mb=20.0)
    teacher = {"top1": 0.95}
    fine = {"top1": 0.9, "latency_ms_batch1": 0.1, "memory_mb": 19.0, "deploy_format": "onnx"}
    assert decide_thresholds(fine, teacher, cfg).passed
    heavy = {**fine, "latency_ms_batch1": 1.5, "memory_mb": 50.0}
    assert decide_thresholds(heavy, teacher, cfg).reasons == (
        "latency 1.50 ms (onnx) exceeds validate.max_latency_ms 1.00",
        "memory 50.0 MB (onnx) exceeds validate.max_memory_mb 20.0",
    )
    unmeasured = {"top1": 0.9, "latency_ms_batch1": 0.1}
    assert decide_thresholds(unmeasured, teacher, cfg).reasons == (
        "validate.max_memory_mb is set, but memory was not measured (export.enabled is false)",
    )
    refused = {**fine, "deploy_format": "onnx_int8", "deploy_refused": "int8 top-1 0.8000 trails fp32 0.9000 by 0.1000"}
    assert decide_thresholds(refused, teacher, cfg).reasons == (
        "validate.deploy_format onnx_int8 is not offered: int8 top-1 0.8000 trails fp32 0.9000 by 0.1000",
    )
