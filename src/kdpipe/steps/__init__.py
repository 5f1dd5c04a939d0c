"""The pipeline's steps as plain functions: the one seam the CLI, DVC and Kubeflow all call.

Each step loads its inputs from ``params.paths``, computes, decides, and records its files there and
one MLflow run; it returns a small summary. Nothing here knows which orchestrator called it; the work
itself lives in the modules each step names. Each step holds the directories it reads and writes
for its whole run (:func:`kdpipe.steps.workdir.claims`); one called without ``tracking.pipeline_run_id``
takes ``$KDPIPE_PIPELINE_RUN_ID`` or a fresh id. What each step is (its verb, what it reads and
writes, how to rerun it) is said once, in :mod:`kdpipe.steps.spec`.

===================  ===============  =====================================
step                 file             Kubeflow component
===================  ===============  =====================================
prepare_data         data.py          components/prepare_data.py
evaluate_teacher     teacher.py       components/evaluate_teacher.py
fill_teacher_cache   teacher.py       components/teacher_outputs.py
distill              student.py       components/distill.py
validate_student     validation.py    components/validate_student.py
export_models        validation.py    (validate runs it first)
promote, rollback    promotion.py     components/promote.py
probe, attach        probe.py         (a command: the cost measured on a device)
run_pipeline         pipeline.py      (the whole pipeline, locally)
===================  ===============  =====================================
"""

from kdpipe.steps.data import prepare_data
from kdpipe.steps.pipeline import run_pipeline
from kdpipe.steps.probe import attach as attach_probe
from kdpipe.steps.probe import probe
from kdpipe.steps.promotion import add_webhook, promote, repair_registry, rollback
from kdpipe.steps.student import distill
from kdpipe.steps.teacher import evaluate_teacher, fill_teacher_cache
from kdpipe.steps.validation import export_models, validate_student

__all__ = [
    "add_webhook",
    "attach_probe",
    "distill",
    "evaluate_teacher",
    "export_models",
    "fill_teacher_cache",
    "prepare_data",
    "probe",
    "promote",
    "repair_registry",
    "rollback",
    "run_pipeline",
    "validate_student",
]
