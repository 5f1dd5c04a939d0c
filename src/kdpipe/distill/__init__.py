"""Distillation methods, one file each behind :class:`Distiller`; :func:`create_distiller` picks one."""

from __future__ import annotations

from kdpipe.config import MethodConfig
from kdpipe.distill.base import Distiller, StepOutput
from kdpipe.distill.fitnet import FitNet
from kdpipe.distill.kd import KD
from kdpipe.distill.scratch import Scratch
from kdpipe.distill.srd import SRD
from kdpipe.infra.factories import Factories
from kdpipe.models import FeatureClassifier

# Each factory takes (method config, student, teacher); only scratch accepts teacher None.
METHODS: Factories[Distiller] = Factories("method")


def _needs_teacher(method: MethodConfig, teacher: FeatureClassifier | None) -> FeatureClassifier:
    if teacher is None:
        raise ValueError(f"method {method.name!r} needs a teacher; only 'scratch' trains without one")
    return teacher


@METHODS.register("scratch")
def _scratch(method: MethodConfig, student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    return Scratch(student)


@METHODS.register("srd")
def _srd(method: MethodConfig, student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    return SRD(student, _needs_teacher(method, teacher), method.srd)


@METHODS.register("kd")
def _kd(method: MethodConfig, student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    return KD(student, _needs_teacher(method, teacher), method.kd)


@METHODS.register("fitnet")
def _fitnet(method: MethodConfig, student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    return FitNet(student, _needs_teacher(method, teacher), method.fitnet)


def create_distiller(method: MethodConfig, student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    return METHODS.create(method.name, method, student, teacher)


__all__ = ["METHODS", "Distiller", "StepOutput", "create_distiller"]
