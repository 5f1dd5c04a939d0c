"""params.yaml validation in-process: what is accepted, and that each rejection names its key.

The CLI's error contract (one line, non-zero exit, no traceback) is in test_cli.py; here the schema
itself is pinned, including that the repository's params.yaml spells out every knob.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from kdpipe.config import Params, load_params, params_from_dict
from kdpipe.distill import (
    DISTSettings,
    DKDSettings,
    FitNetSettings,
    KDSettings,
    LSKDSettings,
    SRDSettings,
    VKDSettings,
)
from kdpipe.infra.errors import ConfigError

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_repository_params_yaml_lists_every_knob_at_its_default() -> None:
    """params.yaml is the one place a user reads the knobs: it must hold all of them, nothing else."""
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    assert raw == Params().to_dict()
    assert load_params(REPO_PARAMS) == Params()


def test_overrides_go_through_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(REPO_PARAMS.read_text())
    p = load_params(path, ["train.epochs=2", "method.srd.alpha=3.5", "teacher.train.batch_size=64", "method.name=kd"])
    assert (p.train.epochs, p.method.srd.alpha, p.teacher.train.batch_size, p.method.name) == (2, 3.5, 64, "kd")
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_params(path, ["train.epochs=0"])


def test_a_bare_off_means_off_for_progress_and_the_teacher_cache(tmp_path: Path) -> None:
    """YAML 1.1 reads ``off`` as false; ``runtime.progress: off``, ``cache.mode: off`` and the deprecated
    ``method.<name>.cache: off`` must still mean "off", a typo still fail."""
    path = tmp_path / "params.yaml"
    path.write_text(REPO_PARAMS.read_text().replace("progress: auto", "progress: off"))
    assert load_params(path).runtime.progress == "off"
    assert load_params(REPO_PARAMS, ["runtime.progress=off"]).runtime.progress == "off"
    with pytest.raises(ConfigError, match=r"runtime\.progress"):
        load_params(REPO_PARAMS, ["runtime.progress=true"])
    assert load_params(REPO_PARAMS, ["cache.mode=off"]).cache.mode == "off"
    with pytest.raises(ConfigError, match=r"cache\.mode"):
        load_params(REPO_PARAMS, ["cache.mode=on"])
    old = tmp_path / "old.yaml"
    old.write_text("method:\n  srd:\n    cache: off\n  kd:\n    cache: off\n  fitnet:\n    cache: off\n")
    assert load_params(old).cache.mode == "off"
    with pytest.raises(ConfigError, match=r"method\.kd\.cache"):
        load_params(old, ["method.kd.cache=on"])


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"epoch": 3}}, "train.epoch"),
        ({"shiny": {}}, "shiny"),
        ({"train": {"epochs": "two"}}, "train.epochs"),
        ({"train": {"epochs": 2.0}}, "train.epochs"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"method": {"srd": {"alpha": 0}}}, "method.srd.alpha"),
        ({"method": {"srd": {"alpha": -1.0}}}, "method.srd.alpha"),
        ({"train": {"batch_size": 1}}, "train.batch_size"),
        ({"teacher": {"train": {"batch_size": 1}}}, "teacher.train.batch_size"),
        ({"method": {"srd": {"projector": "none"}}}, "method.srd.projector"),
        ({"method": {"srd": {"norm": "batch"}}}, "method.srd.norm"),
        ({"student": {"arch": "resnet9000"}}, "student.arch"),
        ({"train": {"epochs": 2, "warmup_epochs": 2}}, "train"),
        ({"validate": {"min_top1": 1.5}}, "validate.min_top1"),
        ({"export": {"formats": ["tensorrt"]}}, "export.formats.0"),
        ({"export": {"opset": 11}}, "export.opset"),
        ({"export": {"formats": ["onnx"]}, "validate": {"deploy_format": "openvino"}}, "validate.deploy_format"),
        ({"validate": {"device_profile": "line4"}}, "validate.device_profile"),
        ({"kubeflow": {"labels": {"queue name": "nightly"}}}, "kubeflow.labels"),
        ({"kubeflow": {"memory_request": "8 GB"}}, "kubeflow.memory_request"),
        ({"kubeflow": {"timeouts_s": {"distill": 10}}}, "kubeflow.timeouts_s.distill"),
        ({"kubeflow": {"job_deadline_s": 80000}}, "kubeflow.job_deadline_s"),
        ({"train": {"epochs": 10**31}}, "train.epochs"),
        (
            {"validate": {"device_profile": "models:/s@champion#line4", "deploy_format": "pytorch"}},
            "validate.device_profile",
        ),
    ],
)
def test_bad_value_names_its_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        params_from_dict(raw, origin="params.yaml")
    message = str(info.value)
    assert message.startswith(f"params.yaml: {key}: "), message
    assert "\n" not in message


def test_projector_none_is_accepted_for_equal_feature_sizes() -> None:
    p = params_from_dict(
        {"student": {"arch": "cnn16"}, "teacher": {"arch": "cnn16"}, "method": {"srd": {"projector": "none"}}}
    )
    assert p.method.srd.projector == "none"


def test_bad_override_syntax_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("{}\n")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_params(path, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"train\.epochs is not a section"):
        load_params(path, ["train.epochs=3", "train.epochs.x=1"])


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("srd", SRDSettings),
        ("kd", KDSettings),
        ("fitnet", FitNetSettings),
        ("dkd", DKDSettings),
        ("lskd", LSKDSettings),
        ("dist", DISTSettings),
        ("vkd", VKDSettings),
    ],
    ids=str,
)
def test_each_method_section_spells_its_methods_settings_at_their_defaults(name: str, settings: type) -> None:
    """distill reads no config: ``method.<name>`` is turned into the keyword arguments of its method's settings,
    so the section must hold exactly those fields, and its defaults must be theirs."""
    method = Params().method.model_copy(update={"name": name})
    assert set(type(getattr(method, name)).model_fields) - {"cache"} == {f.name for f in dataclasses.fields(settings)}
    assert settings(**method.hyperparameters()) == settings()


def test_the_configured_method_alone_is_handed_to_the_distiller() -> None:
    p = load_params(REPO_PARAMS, ["method.name=kd", "method.kd.temperature=4", "method.srd.alpha=2"])
    assert p.method.hyperparameters() == {"temperature": 4.0, "kl_weight": 0.5, "ce_weight": 0.5}
    assert load_params(REPO_PARAMS, ["method.name=scratch"]).method.hyperparameters() == {}


def _old_style(text: str) -> str:
    """The repository's params.yaml as it was before cache.mode: each method section has its own cache key."""
    text = text.replace("  mode: auto ", "  # mode: auto ")
    for section in ("  srd:\n", "  kd:\n", "  fitnet:\n"):
        assert text.count(section) == 1, section
        text = text.replace(section, f"{section}    cache: auto\n")
    return text


def test_an_old_params_yaml_with_method_cache_keys_loads_as_today_with_one_warning_naming_cache_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(_old_style(REPO_PARAMS.read_text()))
    assert yaml.safe_load(path.read_text())["method"]["kd"]["cache"] == "auto"

    with caplog.at_level("WARNING", logger="kdpipe"):
        assert load_params(path) == Params()
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    message = record.getMessage()
    assert "\n" not in message
    assert message.startswith(f"{path}: method.fitnet.cache, method.kd.cache, method.srd.cache are deprecated")
    assert "set cache.mode instead (read as cache.mode: auto)" in message


def test_the_old_key_alone_sets_cache_mode_and_leaves_no_trace_in_the_method_section(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="kdpipe"):
        p = params_from_dict({"method": {"name": "kd", "kd": {"cache": "require", "temperature": 4.0}}})
    assert p.cache.mode == "require"
    assert p.method.kd.temperature == 4.0 and "cache" not in p.to_dict()["method"]["kd"]
    assert p.method.hyperparameters() == {"temperature": 4.0, "kl_weight": 0.5, "ce_weight": 0.5}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["params: method.kd.cache is deprecated; set cache.mode instead (read as cache.mode: require)"]
    agreeing = params_from_dict({"cache": {"mode": "off"}, "method": {"srd": {"cache": False}}})
    assert agreeing.cache.mode == "off"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"cache": {"mode": "auto"}, "method": {"srd": {"cache": "require"}}}, "method.srd.cache"),
        ({"cache": {"mode": "off"}, "method": {"kd": {"cache": "auto"}, "srd": {"cache": "auto"}}}, "method.kd.cache"),
        ({"method": {"kd": {"cache": "off"}, "srd": {"cache": "require"}}}, "method.srd.cache is require"),
    ],
    ids=["old-vs-new", "two-old-vs-new", "two-old-keys"],
)
def test_old_and_new_cache_keys_that_disagree_are_one_error_naming_both(raw: dict, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        params_from_dict(raw, origin="params.yaml")
    message = str(info.value)
    assert message.startswith("params.yaml: cache.mode: "), message
    assert named in message and "\n" not in message


def test_an_old_cache_key_on_the_command_line_that_contradicts_params_yaml_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"cache\.mode: 'auto', but the deprecated method\.srd\.cache says 'require'"):
        load_params(REPO_PARAMS, ["method.srd.cache=require"])
