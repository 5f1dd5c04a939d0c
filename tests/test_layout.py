"""The layout's promises, checked on the source: the library never imports the top-level
``pipelines`` or ``components``; only the CLI, the components and the study runner call the steps;
tag names are written once; steps and components stay small."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import kdpipe

SRC = Path(kdpipe.__file__).parent
REPO = SRC.parent.parent
STEP_CALLERS = {"kdpipe.cli", "kdpipe.study.runner"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


def _library_modules() -> list[str]:
    return sorted(_module_name(p) for p in SRC.rglob("*.py") if p.name != "__main__.py")


def test_importing_every_kdpipe_module_leaves_pipelines_and_components_out() -> None:
    probe = (
        "import importlib, sys\n"
        f"for name in {_library_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipelines', 'components')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"
    assert "kdpipe.cli" in _library_modules() and len(_library_modules()) > 40


def test_the_command_line_loads_no_kubeflow_code_until_a_kubeflow_command_runs() -> None:
    """Every `kdpipe` command builds the whole parser, plugins included: kfp and the components would add
    about 0.6 s to each (measured on 2 cores), so the plugins import them only when they run."""
    probe = (
        "import sys\n"
        "from kdpipe.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kfp', 'components')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_only_the_cli_components_and_study_runner_import_the_steps() -> None:
    callers = {_module_name(p) for p in SRC.rglob("*.py") if "kdpipe.steps" in _imports(p)}
    assert callers <= STEP_CALLERS, callers - STEP_CALLERS


def test_tag_names_are_written_only_in_the_tag_module() -> None:
    literal = re.compile(r"[\"']kdpipe\.")
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("src", "components", "pipelines")
        for path in (REPO / folder).rglob("*.py")
        if path.name != "tags.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []


def test_the_steps_stay_a_thin_seam_and_components_declarations() -> None:
    assert len((SRC / "steps.py").read_text().splitlines()) <= 290  # eight steps and two registry commands
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "components").glob("*.py")}
    assert sizes and max(sizes.values()) <= 40, sizes  # validate declares 13 inputs and outputs
