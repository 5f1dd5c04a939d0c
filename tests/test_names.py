"""Every name params.yaml spells (model, method, projector, norm, distance) comes from one table.

An unknown name fails the same way wherever it enters: through the CLI as one line that names the key
and lists every valid name, through the library as an UnknownNameError. The expected choices are read
from the tables, so a new entry cannot be missing from the config schema or from the message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdpipe.cli import main
from kdpipe.config import apply_overrides, params_from_dict
from kdpipe.distill import METHODS, create_distiller
from kdpipe.distill.distance import DISTANCES, make_distance
from kdpipe.distill.normalization import NORMS, make_norm
from kdpipe.distill.projector import PROJECTORS, make_projector
from kdpipe.infra.errors import ConfigError, UnknownNameError
from kdpipe.infra.factories import Factories
from kdpipe.models import MODELS, create_model

# FitNet always maps student features onto the teacher's, so the identity projector is no choice there.
FITNET_PROJECTORS = [name for name in PROJECTORS.names() if name != "none"]

# key, what the message calls it, every name it must list
CHOICES = [
    ("student.arch", "model", [*MODELS.names(), *MODELS.patterns]),
    ("method.name", "method", METHODS.names()),
    ("method.srd.projector", "projector", PROJECTORS.names()),
    ("method.srd.norm", "norm", NORMS.names()),
    ("method.srd.distance", "distance", DISTANCES.names()),
    ("method.fitnet.projector", "projector", FITNET_PROJECTORS),
]


def _listed(message: str) -> list[str]:
    """The names after "; choices: " in a one-line message."""
    return message.partition("; choices: ")[2].split(", ")


@pytest.mark.parametrize(("key", "kind", "choices"), CHOICES, ids=[key for key, _, _ in CHOICES])
def test_an_unknown_name_on_the_command_line_is_one_line_naming_the_key_and_every_choice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str,
    kind: str,
    choices: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("runtime:\n  device: cpu\n  progress: off\n")

    assert main(["distill", "-c", "params.yaml", "-p", f"{key}=bogus"]) == 2

    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    line = err.rstrip("\n")
    assert line.startswith(f"kdpipe: error: -p {key}=bogus: {key}: unknown {kind} 'bogus'; choices: "), line
    assert sorted(_listed(line)) == sorted(choices), "every valid name, and only those"
    assert "(got" not in line, "the message quotes the name once"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "a rejected run must not start"


@pytest.mark.parametrize(
    ("build", "table"),
    [
        (lambda: create_model("bogus", 10), MODELS),
        (
            lambda: create_distiller("bogus", create_model("cnn8", 10, 1), create_model("cnn16", 10, 1)),
            METHODS,
        ),
        (lambda: make_projector("bogus", 4, 4), PROJECTORS),
        (lambda: make_norm("bogus", 4), NORMS),
        (lambda: make_distance("bogus"), DISTANCES),
    ],
    ids=["model", "method", "projector", "norm", "distance"],
)
def test_an_unknown_name_in_a_library_factory_is_an_unknown_name_error_listing_the_table(
    build: Callable[[], object], table: Factories[object]
) -> None:
    with pytest.raises(UnknownNameError) as info:
        build()
    message = str(info.value)
    assert message.startswith(f"unknown {table.kind} 'bogus'; choices: ")
    assert "\n" not in message
    assert _listed(message) == [*table.names(), *table.patterns]
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_an_unknown_method_is_an_error_not_fitnet() -> None:
    """create_distiller used to fall through to FitNet for any name it did not know."""
    student, teacher = create_model("cnn8", 10, 1), create_model("cnn16", 10, 1)
    with pytest.raises(UnknownNameError, match="unknown method 'fitnett'"):
        create_distiller("fitnett", student, teacher)
    with pytest.raises(UnknownNameError, match="unknown method 'fitnett'"):
        create_distiller("fitnett", student, None)


def test_only_scratch_trains_without_a_teacher() -> None:
    torch.manual_seed(0)
    student = create_model("cnn8", 10, 1)
    assert create_distiller("scratch", student, None).teacher is None
    for name in set(METHODS.names()) - {"scratch"}:
        with pytest.raises(ValueError, match=f"method '{name}' needs a teacher"):
            create_distiller(name, student, None)


@pytest.mark.parametrize(
    ("key", "name"),
    [(key, name) for key, _, choices in CHOICES if key != "student.arch" for name in choices],
)
def test_every_name_in_a_table_is_accepted_by_the_config(key: str, name: str) -> None:
    """The schema derives its choices from the tables: nothing to keep in step by hand."""
    raw = apply_overrides({"student": {"arch": "cnn16"}, "teacher": {"arch": "cnn16"}}, [f"{key}={name}"])
    value = params_from_dict(raw).to_dict()
    for part in key.split("."):
        value = value[part]
    assert value == name


def test_fitnet_rejects_the_identity_projector_that_srd_accepts() -> None:
    assert "none" in PROJECTORS
    with pytest.raises(ConfigError, match=r"^params: method\.fitnet\.projector: unknown projector 'none'; choices: "):
        params_from_dict({"method": {"fitnet": {"projector": "none"}}})


def test_a_name_registered_twice_is_a_bug_not_an_override() -> None:
    table: Factories[int] = Factories("number", {"one": lambda: 1})
    with pytest.raises(ValueError, match="number 'one' is registered twice"):
        table.register("one")(lambda: 2)
    assert table.create("one") == 1
