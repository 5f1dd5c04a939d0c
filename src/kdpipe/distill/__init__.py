"""Distillation methods, one file each behind :class:`Distiller`; :func:`create_distiller` picks one.

A method receives its hyperparameters as keyword arguments, the fields of its frozen settings
(:class:`SRDSettings`, :class:`KDSettings`, ...; scratch has none): this package reads no configuration.
:mod:`kdpipe.config` turns ``method.<name>`` into those arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdpipe.distill.base import Distiller, StepOutput
from kdpipe.distill.dist import DIST, DISTSettings
from kdpipe.distill.dkd import DKD, DKDSettings
from kdpipe.distill.fitnet import FitNet, FitNetSettings
from kdpipe.distill.kd import KD, KDSettings
from kdpipe.distill.lskd import LSKD, LSKDSettings
from kdpipe.distill.scratch import Scratch
from kdpipe.distill.srd import SRD, SRDSettings
from kdpipe.distill.vkd import VKD, VKDSettings
from kdpipe.infra.factories import Factories
from kdpipe.models import FeatureClassifier

# Each factory takes (student, teacher, **hyperparameters); only scratch accepts teacher None.
METHODS: Factories[Distiller] = Factories("method")

FEATURE_METHODS = ("srd", "fitnet", "vkd")
"""The methods that distil the teacher's pooled features, not only its logits: they need a feature layer."""


@METHODS.register("scratch")
def _scratch(student: FeatureClassifier, teacher: FeatureClassifier | None) -> Distiller:
    return Scratch(student)


def _register_with_teacher(name: str, method: Callable[..., Distiller], settings: Callable[..., Any]) -> None:
    """``name`` builds ``method(student, teacher, settings(**hyperparameters))``; a missing teacher is an error."""

    def factory(student: FeatureClassifier, teacher: FeatureClassifier | None, **hyperparameters: Any) -> Distiller:
        if teacher is None:
            raise ValueError(f"method {name!r} needs a teacher; only 'scratch' trains without one")
        return method(student, teacher, settings(**hyperparameters))

    METHODS.register(name)(factory)


_register_with_teacher("srd", SRD, SRDSettings)
_register_with_teacher("kd", KD, KDSettings)
_register_with_teacher("fitnet", FitNet, FitNetSettings)
_register_with_teacher("dkd", DKD, DKDSettings)
_register_with_teacher("lskd", LSKD, LSKDSettings)
_register_with_teacher("dist", DIST, DISTSettings)
_register_with_teacher("vkd", VKD, VKDSettings)


def create_distiller(
    name: str, student: FeatureClassifier, teacher: FeatureClassifier | None, **hyperparameters: Any
) -> Distiller:
    """The method ``name`` around ``student`` and ``teacher``; ``hyperparameters`` are its settings' fields (an
    unknown one is a TypeError naming it); those left out keep their defaults."""
    return METHODS.create(name, student, teacher, **hyperparameters)


__all__ = [
    "FEATURE_METHODS",
    "METHODS",
    "DISTSettings",
    "DKDSettings",
    "Distiller",
    "FitNetSettings",
    "KDSettings",
    "LSKDSettings",
    "SRDSettings",
    "StepOutput",
    "VKDSettings",
    "create_distiller",
]
