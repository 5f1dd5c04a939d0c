"""What each step is, said once: its name, its `kdpipe` verb, the directories it writes and reads, and
the command that finishes its tracking after an MLflow outage.

The locks (:func:`kdpipe.steps.workdir.claims`), the MLflow run (:func:`kdpipe.steps.tracked.tracked_run`),
the command line and the DVC stages all read this table, so a new step or a renamed verb is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One pipeline step.

    ``writes`` and ``reads`` are ``paths.*`` keys; ``rerun`` is the command that, once MLflow is back,
    logs what the step already wrote (None: the step opens no MLflow run, or cannot be rerun alone).
    """

    name: str
    verb: str
    help: str
    writes: tuple[str, ...]
    reads: tuple[str, ...] = ()
    rerun: str | None = None


PREPARE_DATA = Step(
    "prepare_data", "prepare", "materialise the data set with its manifest", ("prepared",), rerun="kdpipe prepare"
)
EVALUATE_TEACHER = Step(
    "evaluate_teacher",
    "teacher",
    "load or train the teacher and measure it",
    ("teacher", "checkpoints"),
    ("prepared",),
    rerun="kdpipe teacher",
)
TEACHER_CACHE = Step(
    "teacher_cache",
    "teacher-cache",
    "record the teacher's outputs for every view distill will train on",
    ("teacher_cache",),
    ("prepared", "teacher"),
)
DISTILL = Step(
    "distill",
    "distill",
    "train the student",
    ("student", "checkpoints"),
    ("prepared", "teacher"),
    rerun="kdpipe distill --resume",
)
VALIDATE_STUDENT = Step(
    "validate_student",
    "validate",
    "measure the student and decide pass/fail",
    ("validation",),
    ("prepared", "teacher", "student"),
    rerun="kdpipe validate",
)
EXPORT = Step(
    "export",
    "export",
    "the student and teacher as ONNX fp32 (student also int8): parity and the inference-cost table",
    ("validation",),
    ("prepared", "teacher", "student"),
)
PROMOTE = Step(
    "promote",
    "promote",
    "register the validated student as challenger; move champion to it when it wins",
    ("promotion",),
    ("prepared", "teacher", "student", "validation"),
    rerun="kdpipe promote",
)
ROLLBACK = Step("rollback", "rollback", "move the champion alias back to the previous champion", ())
RUN_PIPELINE = Step(
    "run_pipeline",
    "run",
    "all five steps in order",
    ("prepared", "teacher", "student", "checkpoints", "validation", "promotion"),
)

STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        PREPARE_DATA,
        EVALUATE_TEACHER,
        TEACHER_CACHE,
        DISTILL,
        VALIDATE_STUDENT,
        EXPORT,
        PROMOTE,
        ROLLBACK,
        RUN_PIPELINE,
    )
}
