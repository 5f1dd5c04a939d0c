"""Distillation methods, one file each behind :class:`Distiller`; :func:`create_distiller` picks one.

A method receives its hyperparameters as keyword arguments, the fields of its frozen settings
(:class:`SRDSettings`, :class:`KDSettings`, :class:`FitNetSettings`; scratch has none): this package reads no
configuration. :mod:`kdpipe.config` turns ``method.<name>`` into those arguments.
"""

from __future__ import annotations

from typing import Any

from kdpipe.distill.base import Distiller, StepOutput
from kdpipe.distill.fitnet import FitNet, FitNetSettings
from kdpipe.distill.kd import KD, KDSettings
from kdpipe.distill.scratch import Scratch
from kdpipe.distill.srd import SRD, SRDSettings
from kdpipe.infra.factories import Factories
from kdpipe.models import FeatureClassifier

# Each factory takes (student, teacher, **hyperparameters); only scratch accepts teacher None.
METHODS: Factories[Distiller] = Factories("method")


def _needs_teacher(name: str, teacher: FeatureClassifier | None) -> FeatureClassifier:
    if teacher is None:
        raise ValueError(f"method {name!r} needs a teacher; only 'scratch' trains without one")
    return teacher


@METHODS.register("scratch")
def _scratch(student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    return Scratch(student)


@METHODS.register("srd")
def _srd(student: FeatureClassifier, teacher: FeatureClassifier | None, **hyperparameters: Any) -> Distiller:
    return SRD(student, _needs_teacher("srd", teacher), SRDSettings(**hyperparameters))


@METHODS.register("kd")
def _kd(student: FeatureClassifier, teacher: FeatureClassifier | None, **hyperparameters: Any) -> Distiller:
    return KD(student, _needs_teacher("kd", teacher), KDSettings(**hyperparameters))


@METHODS.register("fitnet")
def _fitnet(student: FeatureClassifier, teacher: FeatureClassifier | None, **hyperparameters: Any) -> Distiller:
    return FitNet(student, _needs_teacher("fitnet", teacher), FitNetSettings(**hyperparameters))


def create_distiller(
    name: str, student: FeatureClassifier, teacher: FeatureClassifier | None, **hyperparameters: Any
) -> Distiller:
    """The method ``name`` around ``student`` and ``teacher``; ``hyperparameters`` are its settings' fields (an
    unknown one is a TypeError naming it); those left out keep their defaults."""
    return METHODS.create(name, student, teacher, **hyperparameters)


__all__ = [
    "METHODS",
    "Distiller",
    "FitNetSettings",
    "KDSettings",
    "SRDSettings",
    "StepOutput",
    "create_distiller",
]
