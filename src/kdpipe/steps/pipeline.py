"""`kdpipe run`: the five steps in order under one pipeline run id."""

from __future__ import annotations

from typing import Any

from kdpipe.config import Params
from kdpipe.steps.data import prepare_data
from kdpipe.steps.promotion import promote
from kdpipe.steps.spec import RUN_PIPELINE
from kdpipe.steps.student import distill
from kdpipe.steps.teacher import evaluate_teacher
from kdpipe.steps.validation import validate_student
from kdpipe.steps.workdir import claims
from kdpipe.tracking.server import check_tracking


@claims(RUN_PIPELINE)
def run_pipeline(params: Params, resume: bool = False) -> dict[str, Any]:
    """All five steps in order under one pipeline run id, holding every directory, as `kdpipe run` and the demo do."""
    check_tracking(params)
    return {
        "data": prepare_data(params),
        "teacher": evaluate_teacher(params),
        "distill": distill(params, resume=resume),
        "validation": validate_student(params),
        "promotion": promote(params),
    }
