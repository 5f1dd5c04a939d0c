"""The whole params.yaml: its sections together, the checks across them, loading and ``-p KEY=VALUE`` overrides.

The only place that knows every section; each section lives in its own module beside this one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from kdpipe.config.cache import CacheConfig, move_deprecated_mode
from kdpipe.config.data import DataConfig
from kdpipe.config.export import ExportConfig
from kdpipe.config.gate import GateConfig
from kdpipe.config.kubeflow import KubeflowConfig
from kdpipe.config.methods import MethodConfig
from kdpipe.config.paths import PathsConfig
from kdpipe.config.runtime import RuntimeConfig
from kdpipe.config.section import KeyedError, Section
from kdpipe.config.student import StudentConfig
from kdpipe.config.teacher import TeacherConfig
from kdpipe.config.tracking import TrackingConfig
from kdpipe.config.train import StudentTrainConfig
from kdpipe.config.validate import ValidateConfig
from kdpipe.infra.errors import ConfigError, UnknownNameError

DEFAULT_PARAMS = Path("params.yaml")


class Params(Section):
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    method: MethodConfig = MethodConfig()
    train: StudentTrainConfig = StudentTrainConfig(epochs=10, subset=10_000, lr=0.4, weight_decay=0.001)
    runtime: RuntimeConfig = RuntimeConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    gate: GateConfig = GateConfig()
    tracking: TrackingConfig = TrackingConfig()
    export: ExportConfig = ExportConfig()
    cache: CacheConfig = CacheConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()
    paths: PathsConfig = PathsConfig()

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_keys(cls, data: Any, info: ValidationInfo) -> Any:
        """Keys that moved are read at their new place, with a warning (see :mod:`kdpipe.config.cache`)."""
        origin = (info.context or {}).get("origin", "params")
        return move_deprecated_mode(data, origin) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _check_models(self) -> Params:
        from kdpipe.models import MODELS, is_known_model

        for key, arch in (("student.arch", self.student.arch), ("teacher.arch", self.teacher.arch)):
            if not is_known_model(arch):
                raise KeyedError(key, str(MODELS.unknown(arch)))
        if self.validate_.deploy_format != "pytorch" and not self.export.enabled:
            raise KeyedError(
                "validate.deploy_format",
                f"'{self.validate_.deploy_format}' needs export.enabled: true (or deploy_format: pytorch)",
            )
        if self.validate_.device_profile is not None and self.validate_.deploy_format == "pytorch":
            raise KeyedError(
                "validate.device_profile",
                "a device probe measures an exported file, and validate.deploy_format pytorch is none",
            )
        if self.validate_.deploy_format.startswith("openvino") and "openvino" not in self.export.formats:
            raise KeyedError(
                "validate.deploy_format",
                f"'{self.validate_.deploy_format}' needs openvino in export.formats (now {list(self.export.formats)})",
            )
        if self.teacher.source == "train" and (
            self.teacher.classes is not None or self.teacher.preprocess != type(self.teacher.preprocess)()
        ):
            raise KeyedError(
                "teacher.source",
                "'train' trains the teacher on the data's own input and classes; teacher.classes and "
                "teacher.preprocess are for a teacher trained elsewhere",
            )
        # A teacher trained elsewhere has no architecture to measure here: its features are checked when resolved.
        if self.method.name == "srd" and self.method.srd.projector == "none" and self.teacher.source == "train":
            size = self.data.image_size
            d_s, d_t = feature_dim(self.student.arch, size), feature_dim(self.teacher.arch, size)
            if d_s != d_t:
                raise KeyedError(
                    "method.srd.projector",
                    f"'none' needs equal feature sizes, but student {self.student.arch} has {d_s} and "
                    f"teacher {self.teacher.arch} has {d_t}; use 'linear' or 'mlp'",
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def feature_dim(arch: str, image_size: int | None = None) -> int:
    """Feature size of an architecture, built on the meta device so nothing is allocated."""
    import torch

    from kdpipe.models import create_model

    with torch.device("meta"):
        return create_model(arch, num_classes=10, in_channels=3, image_size=image_size).feature_dim


def _error_key(err: Any) -> str:
    """The dotted params key a pydantic error is about."""
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, KeyedError):
        return inner.key
    return ".".join("validate" if str(p) == "validate_" else str(p) for p in err["loc"]) or "(top level)"


def _origin(exc: ValidationError, path: Path, overrides: list[str]) -> str:
    """Where the faulty value came from: the last ``-p`` override that set its key (or a section above it),
    else the params file."""
    key = _error_key(exc.errors()[0])
    setting = [text for text in overrides if f"{key}.".startswith(f"{text.partition('=')[0].strip()}.")]
    return f"-p {setting[-1]}" if setting else str(path)


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    err = exc.errors()[0]
    inner = (err.get("ctx") or {}).get("error")
    key = _error_key(err)
    if isinstance(inner, KeyedError):
        return f"{origin}: {key}: {inner}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    # An unknown name's message already quotes the name, so it needs no "(got ...)".
    elif "input" in err and err["type"] not in ("missing",) and not isinstance(inner, UnknownNameError):
        msg = f"{msg} (got {err['input']!r})"
    extra = f" ({len(exc.errors()) - 1} more error(s))" if len(exc.errors()) > 1 else ""
    return f"{origin}: {key}: {msg}{extra}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=2`` -> (["train", "epochs"], 2); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.problem})") from None
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | None = None) -> Params:
    """Read and validate params.yaml, then apply ``KEY=VALUE`` overrides through the same schema."""
    path, overrides = Path(path), overrides or []
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; name a params file (e.g. {path / 'params.yaml'})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    raw = apply_overrides(raw, overrides)
    try:
        return Params.model_validate(raw, context={"origin": str(path)})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, _origin(exc, path, overrides))) from None


def params_from_dict(raw: dict[str, Any], origin: str = "params") -> Params:
    try:
        return Params.model_validate(raw, context={"origin": origin})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from None
