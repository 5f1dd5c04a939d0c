"""The gate decides on gate.split (val by default), never on the test split, which is only reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.infra.files import DECISION_FILE, PREDICTIONS_FILE, load_checkpoint, read_json


def test_the_thresholds_read_gate_split_so_a_threshold_between_val_and_test_flips_with_it(
    make_params: Callable[..., Params],
) -> None:
    """The student's val and test top-1 differ; validate.min_top1 set between them passes on one split and
    fails on the other, and the paired predictions promote reads are the gate split's."""
    base = make_params(**{"tracking.enabled": False, "validate.corruptions": "none"})
    steps.prepare_data(base)
    steps.evaluate_teacher(base)
    steps.distill(base)
    data = load_prepared(base.paths.prepared)

    def validate(split: str, min_top1: float = 0.0) -> dict[str, object]:
        params = make_params(
            **{
                "tracking.enabled": False,
                "validate.corruptions": "none",
                "gate.split": split,
                "validate.min_top1": min_top1,
            }
        )
        summary = steps.validate_student(params)
        return {
            "summary": summary,
            "decision": read_json(Path(params.paths.validation) / DECISION_FILE),
            "predictions": load_checkpoint(Path(params.paths.validation) / PREDICTIONS_FILE),
        }

    on_val, on_test = validate("val"), validate("test")
    val_top1, test_top1 = on_val["decision"]["top1"], on_test["decision"]["top1"]
    assert on_val["summary"].gate.student["top1"] == val_top1 and on_val["decision"]["split"] == "val"
    assert on_val["summary"].student["top1"] == test_top1, "the test split is still measured and reported"
    assert torch.equal(on_val["predictions"]["labels"], data.split("val")[1])
    assert torch.equal(on_test["predictions"]["labels"], data.split("test")[1])
    assert val_top1 != test_top1, f"the two splits must disagree for this test to prove anything ({val_top1})"

    between = (val_top1 + test_top1) / 2
    verdicts = {split: validate(split, between)["decision"]["passed"] for split in ("val", "test")}
    assert verdicts == {"val": val_top1 >= between, "test": test_top1 >= between}
    assert verdicts["val"] != verdicts["test"]
