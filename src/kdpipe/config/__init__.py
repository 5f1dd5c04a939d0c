"""The params.yaml schema: every knob of kdpipe, validated on load with errors that name the key.

One module per section (``config/data.py`` is ``data:``, ``config/methods.py`` is ``method:``, ...);
:mod:`kdpipe.config.params` holds them together with loading and overrides. This face re-exports the
public names, so ``from kdpipe.config import Params, load_params`` reads the same as before the split."""

from kdpipe.config.cache import CacheConfig, CacheMode
from kdpipe.config.data import DataConfig
from kdpipe.config.export import ExportConfig
from kdpipe.config.gate import GateConfig
from kdpipe.config.kubeflow import KubeflowConfig
from kdpipe.config.methods import FitNetConfig, KDConfig, MethodConfig, SRDConfig
from kdpipe.config.params import (
    DEFAULT_PARAMS,
    Params,
    apply_overrides,
    feature_dim,
    load_params,
    params_from_dict,
    parse_override,
)
from kdpipe.config.paths import PathsConfig
from kdpipe.config.runtime import RuntimeConfig
from kdpipe.config.student import StudentConfig
from kdpipe.config.teacher import TeacherConfig, TeacherPreprocess
from kdpipe.config.tracking import TrackingConfig
from kdpipe.config.train import StudentTrainConfig, TrainConfig
from kdpipe.config.validate import OperationalSetConfig, ValidateConfig

__all__ = [
    "DEFAULT_PARAMS",
    "CacheConfig",
    "CacheMode",
    "DataConfig",
    "ExportConfig",
    "FitNetConfig",
    "GateConfig",
    "KDConfig",
    "KubeflowConfig",
    "MethodConfig",
    "OperationalSetConfig",
    "Params",
    "PathsConfig",
    "RuntimeConfig",
    "SRDConfig",
    "StudentConfig",
    "StudentTrainConfig",
    "TeacherConfig",
    "TeacherPreprocess",
    "TrackingConfig",
    "TrainConfig",
    "ValidateConfig",
    "apply_overrides",
    "feature_dim",
    "load_params",
    "params_from_dict",
    "parse_override",
]
