"""The params.yaml schema: every knob of kdpipe, validated on load with errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kdpipe.infra.errors import ConfigError, UnknownNameError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataConfig(_Section):
    source: Literal["fashion_mnist", "mnist", "cifar10", "cifar100", "imagefolder"] = "fashion_mnist"
    root: str | None = Field(None, description="raw data directory; the ImageFolder root for 'imagefolder'")
    image_size: int | None = Field(None, ge=8, description="resize ImageFolder images to this square size")
    val_size: int = Field(5000, ge=0, description="training images held out for validation")
    train_subset: int | None = Field(None, ge=2, description="keep only this many training images (smoke runs)")
    test_subset: int | None = Field(None, ge=2, description="keep only this many test images (smoke runs)")
    seed: int = 0
    crop_padding: int = Field(2, ge=0)
    hflip: bool | None = Field(None, description="horizontal flips; null picks the data set's default")


class TrainConfig(_Section):
    epochs: int = Field(8, ge=1)
    subset: int | None = Field(
        None,
        ge=2,
        description="train on a fixed sample of this many train-split images (data.seed picks it); null: all",
    )
    batch_size: int = 256
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    milestones: tuple[int, ...] = ()
    gamma: float = Field(0.1, gt=0, le=1)
    seed: int = 0

    @field_validator("milestones", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("batch_size")
    @classmethod
    def _batchnorm_needs_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"must be at least 2, got {value}: BatchNorm in train mode needs 2 samples per batch")
        return value

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones")
        return self


class StudentTrainConfig(TrainConfig):
    view_seed: int | None = Field(
        None,
        description="seed of the training views (order, crops, flips); null: seed. Study seeds and sweep "
        "cells that share it share the views, and so a teacher cache",
    )
    subset_seed: int | None = Field(
        None,
        description="seed that draws the transfer set (subset) from the train split; null: data.seed, which "
        "also splits val off. A fresh transfer set for confirmation without moving the val split or the teacher",
    )

    def identity(self) -> dict[str, Any]:
        """What decides training, for fingerprints. A ``subset_seed`` left null (``data.seed``, as before the key
        existed) is left out, so checkpoints and study results from before it stay valid."""
        return self.model_dump(mode="json", exclude={"subset_seed"} if self.subset_seed is None else None)


class TeacherConfig(_Section):
    source: str = Field("train", description="'train', a checkpoint path, or a models:/ URI")
    arch: str = "cnn32_fc512"
    train: TrainConfig = TrainConfig(epochs=15)


class StudentConfig(_Section):
    arch: str = "cnn16"


def _yaml_off(value: Any) -> Any:
    """YAML 1.1 reads an unquoted ``off`` as false: in a choice that has an ``off``, false means it."""
    return "off" if value is False else value


CacheMode = Annotated[Literal["auto", "off", "require"], BeforeValidator(_yaml_off)]
CACHE_FIELD = Field(
    "auto",
    description="the teacher-output cache: auto (replay what is cached, record the rest), "
    "require (fail unless every epoch is cached), off",
)


class SRDConfig(_Section):
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


class KDConfig(_Section):
    """Hinton et al. 2015: KL at a raised temperature plus cross-entropy."""

    temperature: float = Field(8.0, gt=0)
    kl_weight: float = Field(0.5, ge=0)
    ce_weight: float = Field(0.5, ge=0)
    cache: CacheMode = CACHE_FIELD


class FitNetConfig(_Section):
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


class MethodConfig(_Section):
    name: str = "srd"
    srd: SRDConfig = SRDConfig()
    kd: KDConfig = KDConfig()
    fitnet: FitNetConfig = FitNetConfig()

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from kdpipe.distill import METHODS

        return METHODS.check(value)


class RuntimeConfig(_Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; null uses every core")
    amp: bool = Field(True, description="bf16 autocast, CUDA only")
    channels_last: bool = Field(
        True, description="channels_last memory format for images and convolutions (CUDA and CPU)"
    )
    eval_batch_size: int = Field(256, ge=1, description="images per evaluation batch")
    progress: Annotated[Literal["auto", "bar", "log", "off"], BeforeValidator(_yaml_off)] = "auto"
    """YAML 1.1 reads a bare ``off`` (in params.yaml or ``-p``) as false; it means "off" here."""


class OperationalSetConfig(_Section):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$", description="names its metrics: letters, digits, _ and -"
    )
    source: str = Field(
        min_length=1,
        description="an ImageFolder or prepared data directory, s3://bucket/prefix or dvc+<repo>@<rev>#<path>",
    )
    split: Literal["train", "val", "test"] = Field("test", description="the split read from a prepared data directory")


class ValidateConfig(_Section):
    min_top1: float = Field(0.88, ge=0, le=1)
    max_teacher_gap: float | None = Field(0.06, ge=0, le=1, description="teacher top-1 minus student top-1")
    max_latency_ms: float | None = Field(50.0, gt=0, description="per image at batch 1")
    corruptions: Literal["none", "fast", "full"] = Field(
        "fast",
        description="the corruption suite on the gate split (gate.split): none; fast, every corruption at severity 3; "
        "full, at severities 1-5",
    )
    corruption_seed: int = Field(0, description="the suite's noise, offsets and angles; fixed so runs compare")
    max_corruption_gap: float | None = Field(
        None, ge=0, le=1, description="teacher mean corrupted top-1 minus the student's; null: not checked"
    )
    deploy_format: Literal["pytorch", "onnx", "onnx_int8"] = Field(
        "onnx",
        description="the artifact that is deployed: its measured latency and memory are what "
        "max_latency_ms and max_memory_mb read",
    )
    max_memory_mb: float | None = Field(
        None,
        gt=0,
        description="memory a fresh process needs to load the deploy format and run one batch; null: "
        "reported, not checked",
    )
    operational: tuple[OperationalSetConfig, ...] = Field(
        (), description="named extra evaluation sets (field data), each measured beside the test split"
    )
    operational_min_top1: dict[str, float] = Field(
        {}, description="per named operational set, the student's lowest acceptable top-1 there"
    )

    @field_validator("operational", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _known_sets(self) -> ValidateConfig:
        names = [s.name for s in self.operational]
        if len(set(names)) != len(names):
            raise ValueError(f"operational: set names must be unique, got {names}")
        unknown = sorted(set(self.operational_min_top1) - set(names))
        if unknown:
            raise ValueError(
                f"operational_min_top1: {', '.join(unknown)} names no set in validate.operational "
                f"({', '.join(names) or 'none'})"
            )
        bad = {k: v for k, v in self.operational_min_top1.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"operational_min_top1: top-1 thresholds lie in [0, 1], got {bad}")
        return self


class GateConfig(_Section):
    split: Literal["val", "test"] = Field(
        "val",
        description="where the thresholds, challenger and champion are decided: val (held out from training, "
        "never used to pick a model); the test split is measured and reported, and decides only if set here",
    )
    min_improvement: float = Field(0.0, ge=0, le=1, description="top-1 points over the champion, as a fraction")
    significance: float | None = Field(None, gt=0, lt=1, description="McNemar p-value threshold, null to skip")
    max_robustness_drop: float | None = Field(
        None,
        ge=0,
        le=1,
        description="how much of the champion's mean corrupted top-1 a challenger may lose, even "
        "when it wins on clean data; null: not checked",
    )
    max_class_drop: float | None = Field(
        None, ge=0, le=1, description="how far any class's recall may fall below the champion's; null: not checked"
    )


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str = "sqlite:///mlruns.db"
    experiment: str = Field("kdpipe", min_length=1)
    registered_model: str = Field("kdpipe-student", min_length=1)
    pipeline_run_id: str | None = Field(
        None,
        min_length=1,
        description="groups the steps of one pipeline run in MLflow; null: "
        "$KDPIPE_PIPELINE_RUN_ID, else a fresh id per command",
    )
    kubeflow_run_id: str | None = Field(
        None,
        description="set by the Kubeflow components: the KFP run, tagged on every step run (kdpipe.kubeflow_run_id)",
    )
    kubeflow_ui_url: str | None = Field(
        None,
        description="the Kubeflow Pipelines UI, e.g. https://kubeflow.example/pipeline; with it each step run "
        "is tagged with a link to its KFP run (kdpipe.kubeflow_run_url)",
    )
    ui_url: str | None = Field(
        None,
        description="the MLflow UI that links point at; null: the tracking server when tracking.uri is "
        "http(s), else http://127.0.0.1:5000 (what `mlflow ui` serves)",
    )
    system_metrics_seconds: float | None = Field(
        10.0, gt=0, description="how often the distill run samples CPU, memory and GPU into system/* metrics; null: off"
    )
    retry_seconds: float = Field(
        120.0,
        ge=0,
        description="how long a step, its work done, waits for an unreachable MLflow to come back "
        "before it ends with a one-line error (its files are written either way)",
    )

    @field_validator("uri")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """Params are logged to MLflow: a password here would end up in every run."""
        from urllib.parse import urlsplit

        if urlsplit(value).password is not None:
            raise ValueError(
                "must not contain credentials; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "in the environment instead"
            )
        return value


class CacheConfig(_Section):
    dtype: Literal["float32", "float16"] = Field(
        "float32", description="float32 replays bit-identically; float16 halves the storage"
    )
    max_gb: float = Field(8.0, gt=0, description="the most a distill run records into the teacher cache")


class ExportConfig(_Section):
    enabled: bool = Field(
        True,
        description="validate exports teacher and student to ONNX (student also int8) and "
        "measures every format's inference cost",
    )
    calibration_size: int = Field(512, ge=1, description="transfer-set images that calibrate the int8 activations")
    max_int8_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="int8 top-1 may trail fp32 by this much on the gate "
        "split; beyond it int8 is not offered for deployment",
    )
    threads: int = Field(1, ge=1, description="CPU threads of every cost probe (1: the common edge case)")
    batch_size: int = Field(64, ge=1, description="the batch of the throughput figure")
    repeats: int = Field(200, ge=20, description="timed batch-1 calls per probe (p95 is the 10th slowest of 200)")
    warmup: int = Field(20, ge=0, description="untimed batch-1 calls before timing")


class PathsConfig(_Section):
    prepared: str = "data/prepared"
    teacher: str = "artifacts/teacher"
    student: str = "artifacts/student"
    checkpoints: str = "artifacts/checkpoints"
    validation: str = "artifacts/validation"
    promotion: str = "artifacts/promotion"
    teacher_cache: str = "artifacts/teacher_cache"


class Params(_Section):
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    method: MethodConfig = MethodConfig()
    train: StudentTrainConfig = StudentTrainConfig(epochs=10, subset=10_000)
    runtime: RuntimeConfig = RuntimeConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    gate: GateConfig = GateConfig()
    tracking: TrackingConfig = TrackingConfig()
    export: ExportConfig = ExportConfig()
    cache: CacheConfig = CacheConfig()
    paths: PathsConfig = PathsConfig()

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_models(self) -> Params:
        from kdpipe.models import MODELS, is_known_model

        for key, arch in (("student.arch", self.student.arch), ("teacher.arch", self.teacher.arch)):
            if not is_known_model(arch):
                raise _KeyedError(key, str(MODELS.unknown(arch)))
        if self.validate_.deploy_format != "pytorch" and not self.export.enabled:
            raise _KeyedError(
                "validate.deploy_format",
                f"'{self.validate_.deploy_format}' needs export.enabled: true (or deploy_format: pytorch)",
            )
        if self.method.name == "srd" and self.method.srd.projector == "none":
            d_s, d_t = feature_dim(self.student.arch), feature_dim(self.teacher.arch)
            if d_s != d_t:
                raise _KeyedError(
                    "method.srd.projector",
                    f"'none' needs equal feature sizes, but student {self.student.arch} has {d_s} and "
                    f"teacher {self.teacher.arch} has {d_t}; use 'linear' or 'mlp'",
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class _KeyedError(ValueError):
    """A cross-section check that knows which key is at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def feature_dim(arch: str) -> int:
    """Feature size of an architecture, built on the meta device so nothing is allocated."""
    import torch

    from kdpipe.models import create_model

    with torch.device("meta"):
        return create_model(arch, num_classes=10, in_channels=3).feature_dim


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _KeyedError):
        return f"{origin}: {inner.key}: {inner}"
    key = ".".join("validate" if p == "validate_" else p for p in loc) or "(top level)"
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
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    raw = apply_overrides(raw, overrides or [])
    return params_from_dict(raw, origin=str(path))


def params_from_dict(raw: dict[str, Any], origin: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from None
