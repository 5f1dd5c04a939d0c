"""``method:``: which distillation method trains the student, and each method's own settings.

Each ``method.<name>`` section spells the fields of that method's settings in :mod:`kdpipe.distill` and takes
their defaults from there (``tests/test_config.py`` holds the fields equal); :meth:`MethodConfig.hyperparameters`
hands the configured one to :func:`kdpipe.distill.create_distiller` as keyword arguments, so the methods read no
configuration. Names are checked against distill's tables.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from kdpipe.config.section import Section
from kdpipe.distill import (
    METHODS,
    DISTSettings,
    DKDSettings,
    FitNetSettings,
    KDSettings,
    LSKDSettings,
    SRDSettings,
    VKDSettings,
)
from kdpipe.distill.distance import DISTANCES
from kdpipe.distill.normalization import NORMS
from kdpipe.distill.projector import PROJECTORS

_SRD, _KD, _FITNET = SRDSettings(), KDSettings(), FitNetSettings()
_DKD, _LSKD, _DIST, _VKD = DKDSettings(), LSKDSettings(), DISTSettings(), VKDSettings()


class SRDConfig(Section):
    """The simple recipe: projector, normalisation and distance are the paper's three switches."""

    projector: str = _SRD.projector
    train_projector: bool = Field(_SRD.train_projector, description="false freezes a random projector (ablation)")
    norm: str = _SRD.norm
    distance: str = _SRD.distance
    alpha: float = Field(_SRD.alpha, gt=0, description="exponent of the LogSum distance")
    feat_weight: float = Field(_SRD.feat_weight, ge=0)
    kl_weight: float = Field(_SRD.kl_weight, ge=0)
    ce_weight: float = Field(_SRD.ce_weight, ge=0)
    temperature: float = Field(_SRD.temperature, gt=0)

    @field_validator("projector", "norm", "distance")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        return {"projector": PROJECTORS, "norm": NORMS, "distance": DISTANCES}[info.field_name].check(value)


class KDConfig(Section):
    """Hinton et al. 2015: KL at a raised temperature plus cross-entropy."""

    temperature: float = Field(_KD.temperature, gt=0)
    kl_weight: float = Field(_KD.kl_weight, ge=0)
    ce_weight: float = Field(_KD.ce_weight, ge=0)


class FitNetConfig(Section):
    """Romero et al. 2015 on pooled features: a projector and MSE, no normalisation."""

    projector: str = _FITNET.projector
    feat_weight: float = Field(_FITNET.feat_weight, ge=0)
    ce_weight: float = Field(_FITNET.ce_weight, ge=0)

    @field_validator("projector")
    @classmethod
    def _known_projector(cls, value: str) -> str:
        # FitNet always maps D_s to D_t with a learned regressor, so 'none' (the identity) is no FitNet projector.
        return PROJECTORS.without("none").check(value)


class DKDConfig(Section):
    """Decoupled KD (Zhao et al., CVPR 2022): target and non-target KL weighted apart, plus cross-entropy."""

    alpha: float = Field(_DKD.alpha, ge=0, description="weight of the target-class (binary) KL")
    beta: float = Field(_DKD.beta, ge=0, description="weight of the KL over the non-target classes")
    temperature: float = Field(_DKD.temperature, gt=0)
    ce_weight: float = Field(_DKD.ce_weight, ge=0)


class LSKDConfig(Section):
    """Logit standardisation (Sun et al., CVPR 2024): KD on each sample's z-scored logits."""

    temperature: float = Field(_LSKD.temperature, gt=0, description="applied after standardising")
    kl_weight: float = Field(_LSKD.kl_weight, ge=0)
    ce_weight: float = Field(_LSKD.ce_weight, ge=0)


class DISTConfig(Section):
    """DIST (Huang et al., NeurIPS 2022): Pearson correlation of class and sample relations, plus cross-entropy."""

    inter_weight: float = Field(_DIST.inter_weight, ge=0, description="each sample's ranking of the classes")
    intra_weight: float = Field(_DIST.intra_weight, ge=0, description="each class's ranking of the samples")
    temperature: float = Field(_DIST.temperature, gt=0)
    ce_weight: float = Field(_DIST.ce_weight, ge=0)


class VKDConfig(Section):
    """VkD (Miles et al., CVPR 2024): orthogonal projector, layer-normed teacher features, smooth L1, KL and CE."""

    feat_weight: float = Field(_VKD.feat_weight, ge=0)
    kl_weight: float = Field(_VKD.kl_weight, ge=0)
    ce_weight: float = Field(_VKD.ce_weight, ge=0)
    temperature: float = Field(_VKD.temperature, gt=0)


class MethodConfig(Section):
    name: str = "srd"
    srd: SRDConfig = SRDConfig()
    kd: KDConfig = KDConfig()
    fitnet: FitNetConfig = FitNetConfig()
    dkd: DKDConfig = DKDConfig()
    lskd: LSKDConfig = LSKDConfig()
    dist: DISTConfig = DISTConfig()
    vkd: VKDConfig = VKDConfig()

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return METHODS.check(value)

    def section(self) -> Section | None:
        """The configured method's own section, ``method.<name>``; None for a method without settings (scratch)."""
        return getattr(self, self.name, None)

    def hyperparameters(self) -> dict[str, Any]:
        """The configured method's own settings (``method.<name>``), as the keyword arguments of
        :func:`kdpipe.distill.create_distiller`; none for a method without a section (scratch)."""
        section = self.section()
        return {} if section is None else section.model_dump()
