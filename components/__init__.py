"""One Kubeflow component per pipeline step, each a thin typed wrapper over :mod:`kdpipe.steps` (the
study's over :mod:`kdpipe.study.fanout`).

Every component runs in the project's image (:data:`kdpipe.kubeflow.image.IMAGE`), which already
holds kfp, so none installs anything at run time.
"""

from kdpipe_components.distill import distill
from kdpipe_components.distill_multinode import distill_multinode
from kdpipe_components.evaluate_teacher import evaluate_teacher
from kdpipe_components.prepare_data import prepare_data
from kdpipe_components.promote import promote
from kdpipe_components.run_end import run_end
from kdpipe_components.study_report import study_report
from kdpipe_components.study_run import study_run
from kdpipe_components.study_teacher import study_teacher
from kdpipe_components.study_teacher_outputs import study_teacher_outputs
from kdpipe_components.teacher_outputs import teacher_outputs
from kdpipe_components.validate_student import validate_student

__all__ = [
    "distill",
    "distill_multinode",
    "evaluate_teacher",
    "prepare_data",
    "promote",
    "run_end",
    "study_report",
    "study_run",
    "study_teacher",
    "study_teacher_outputs",
    "teacher_outputs",
    "validate_student",
]
