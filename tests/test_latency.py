"""How the gate's latency is settled (kdpipe_probe.settle): the median of repeated probes, probed again over
the limit. The probes here are given figures, one per call, so each case states the measurements it needs; the
real probe processes are settled the same way in test_export."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kdpipe_probe.settle import settle


def probes(*p50s: float) -> tuple[list[float], object]:
    """A probe returning the given p50s in turn (memory fixed), and the list of those it was asked for."""
    asked: list[float] = []
    figures: Iterator[float] = iter(p50s)

    def probe() -> dict[str, float]:
        p50 = next(figures)
        asked.append(p50)
        return {"p50_ms": p50, "p95_ms": 2 * p50, "memory_mb": 10.0}

    return asked, probe


def test_one_slow_probe_of_three_does_not_move_the_median_and_is_kept_in_the_spread() -> None:
    asked, probe = probes(124.0, 0.85, 0.86)
    figures = settle(probe, 3, limit=50.0)
    assert figures["p50_ms"] == 0.86 and figures["p95_ms"] == 1.72 and figures["memory_mb"] == 10.0
    assert (figures["probes"], figures["p50_ms_min"], figures["p50_ms_max"]) == (3, 0.85, 124.0)
    assert asked == [124.0, 0.85, 0.86]


def test_a_median_over_the_limit_is_probed_again_before_it_counts() -> None:
    asked, probe = probes(124.0, 130.0, 0.85, 0.9, 0.8, 0.95, 0.87)  # two slow of three: probed 4 more times
    figures = settle(probe, 3, limit=50.0)
    assert len(asked) == 7 and figures["probes"] == 7
    assert figures["p50_ms"] == pytest.approx(0.9)


def test_a_model_truly_over_the_limit_stays_over_it() -> None:
    asked, probe = probes(*[60.0 + i for i in range(7)])
    figures = settle(probe, 3, limit=50.0)
    assert figures["p50_ms"] == 63.0 and figures["probes"] == 7 == len(asked)


def test_one_probe_over_the_limit_gets_two_more_so_the_median_has_a_middle() -> None:
    asked, probe = probes(124.0, 0.85, 0.9)
    figures = settle(probe, 1, limit=50.0)
    assert asked == [124.0, 0.85, 0.9] and figures["p50_ms"] == 0.9


def test_without_a_limit_nothing_is_probed_again() -> None:
    asked, probe = probes(124.0, 130.0, 0.85)
    assert settle(probe, 3, limit=None)["p50_ms"] == 124.0 and len(asked) == 3


def test_a_device_profile_carries_the_pods_latency_to_the_device_by_the_reference_files_ratio() -> None:
    """The device ran the reference 4x as long as this pod did, so the gate reads 4x the candidate's pod latency,
    and a refusal names the device."""
    from kdpipe.config import ValidateConfig
    from kdpipe.deploy.deployment_record import Deployment
    from kdpipe.deploy.device_profile import DeviceProfile
    from kdpipe.promotion.gate import decide_thresholds

    profile = DeviceProfile("models:/s/3#line4", "line4", "onnx", "s v3 (s-onnx v3)", "ab", 8.0, 2.0, 1, "2026-12-07")
    cost = {"student": {"onnx": {"p50_ms": 3.0, "memory_mb": 20.0}}}
    deployed = Deployment({}, {}, {}, cost, "onnx", 1, 64, device_profile=profile)
    figures = deployed.gate_figures()
    assert (profile.ratio, figures["latency_ms_batch1"], figures["latency_on"]) == (4.0, 12.0, "line4")
    assert figures["memory_mb"] == 20.0
    cfg = ValidateConfig(min_top1=0.0, max_teacher_gap=None, max_latency_ms=10.0)
    verdict = decide_thresholds({"top1": 0.9, **figures, "deploy_format": "onnx"}, {"top1": 0.9}, cfg)
    assert verdict.reasons == ("latency 12.00 ms (onnx, estimated on line4) exceeds validate.max_latency_ms 10.00",)
    assert verdict.latency_on == "line4"
    assert Deployment({}, {}, {}, cost, "onnx", 1, 64).gate_figures()["latency_ms_batch1"] == 3.0
