"""``method:``: which distillation method trains the student, and each method's own settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from kdpipe.config.section import Section, yaml_off

CacheMode = Annotated[Literal["auto", "off", "require"], BeforeValidator(yaml_off)]
CACHE_FIELD = Field(
    "auto",
    description="the teacher-output cache: auto (replay what is cached, record the rest), "
    "require (fail unless every epoch is cached), off",
)


class SRDConfig(Section):
    """The simple recipe: projector, normalisation and distance are the paper's three switches."""

    projector: str = "linear"
    train_projector: bool = Field(True, description="false freezes a random projector (ablation)")
    norm: str = "bn"
    distance: str = "logsum"
    alpha: float = Field(4.0, gt=0, description="exponent of the LogSum distance")
    feat_weight: float = Field(2.0, ge=0)
    kl_weight: float = Field(0.9, ge=0)
    ce_weight: float = Field(0.1, ge=0)
    temperature: float = Field(1.0, gt=0)
    cache: CacheMode = CACHE_FIELD

    @field_validator("projector", "norm", "distance")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        from kdpipe.distill.distance import DISTANCES
        from kdpipe.distill.normalization import NORMS
        from kdpipe.distill.projector import PROJECTORS

        return {"projector": PROJECTORS, "norm": NORMS, "distance": DISTANCES}[info.field_name].check(value)


class KDConfig(Section):
    """Hinton et al. 2015: KL at a raised temperature plus cross-entropy."""

    temperature: float = Field(8.0, gt=0)
    kl_weight: float = Field(0.5, ge=0)
    ce_weight: float = Field(0.5, ge=0)
    cache: CacheMode = CACHE_FIELD


class FitNetConfig(Section):
    """Romero et al. 2015 on pooled features: a projector and MSE, no normalisation."""

    projector: str = "linear"
    feat_weight: float = Field(30.0, ge=0)
    ce_weight: float = Field(1.0, ge=0)
    cache: CacheMode = CACHE_FIELD

    @field_validator("projector")
    @classmethod
    def _known_projector(cls, value: str) -> str:
        from kdpipe.distill.projector import PROJECTORS

        # FitNet always maps D_s to D_t with a learned regressor, so 'none' (the identity) is no FitNet projector.
        return PROJECTORS.without("none").check(value)


class MethodConfig(Section):
    name: str = "srd"
    srd: SRDConfig = SRDConfig()
    kd: KDConfig = KDConfig()
    fitnet: FitNetConfig = FitNetConfig()

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from kdpipe.distill import METHODS

        return METHODS.check(value)
