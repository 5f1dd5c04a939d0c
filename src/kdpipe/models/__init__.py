"""Models: the classifiers kdpipe builds by name (:mod:`~kdpipe.models.zoo`), their pooled features and
logits (:mod:`~kdpipe.models.base`), the model file format (:mod:`~kdpipe.models.file`) and the serving
wrapper (:mod:`~kdpipe.models.serving`)."""

from kdpipe.models.base import FeatureClassifier
from kdpipe.models.zoo import (
    MODELS,
    TIMM_PREFIX,
    TORCHVISION_PREFIX,
    count_parameters,
    create_model,
    is_known_model,
)

__all__ = [
    "MODELS",
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "FeatureClassifier",
    "count_parameters",
    "create_model",
    "is_known_model",
]
