"""Distillation methods, one file each behind :class:`Distiller`; :func:`create_distiller` picks one."""

from __future__ import annotations

from kdpipe.config import MethodConfig
from kdpipe.distill.base import Distiller, StepOutput
from kdpipe.distill.fitnet import FitNet
from kdpipe.distill.kd import KD
from kdpipe.distill.scratch import Scratch
from kdpipe.distill.srd import SRD
from kdpipe.models import FeatureClassifier


def create_distiller(method: MethodConfig, student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    if method.name == "scratch":
        return Scratch(student)
    if teacher is None:
        raise ValueError(f"method {method.name!r} needs a teacher")
    if method.name == "srd":
        return SRD(student, teacher, method.srd)
    if method.name == "kd":
        return KD(student, teacher, method.kd)
    return FitNet(student, teacher, method.fitnet)


__all__ = ["Distiller", "StepOutput", "create_distiller"]
