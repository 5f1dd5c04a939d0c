"""One Kubeflow component per pipeline step, each a thin typed wrapper over :mod:`kdpipe.steps`.

Every component runs in the project's image (:data:`kdpipe.kubeflow.image.IMAGE`), which already
holds kfp, so none installs anything at run time.
"""

from components.distill import distill
from components.distill_pytorchjob import distill_pytorchjob
from components.evaluate_teacher import evaluate_teacher
from components.prepare_data import prepare_data
from components.promote import promote
from components.teacher_outputs import teacher_outputs
from components.validate_student import validate_student

__all__ = ["distill", "distill_pytorchjob", "evaluate_teacher", "prepare_data", "promote", "teacher_outputs",
           "validate_student"]
