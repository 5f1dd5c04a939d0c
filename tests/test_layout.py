"""The layout's promises, checked on the source: the tree is the architecture.

Folders are layers, and a module imports only from its own folder or from layers below it; no import
circle is left; the library never imports the top-level ``kdpipe_pipelines`` or ``kdpipe_components``;
only the CLI, the components and the study runner call the steps; each step's identity is said once
(:mod:`kdpipe.steps.spec`); tag names are written once; modules, steps and components stay small."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import kdpipe
from kdpipe.steps import spec

SRC = Path(kdpipe.__file__).parent
REPO = SRC.parent.parent
STEP_CALLERS = {"kdpipe.cli", "kdpipe.study.runner"}
ORCHESTRATION = ("kdpipe_pipelines", "kdpipe_components")

# Bottom to top: a module may import its own folder and any folder on an earlier line.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("infra",),
    ("models",),
    ("distill",),
    ("config",),
    ("data", "tracking", "identity"),
    ("training", "promotion", "kubeflow"),
    ("teacher", "deploy"),
    ("evaluation",),
    ("steps",),
    ("study",),
    ("cli", "__main__"),
)
RANK = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


def _library_modules() -> list[str]:
    return sorted(_module_name(p) for p in SRC.rglob("*.py") if p.name != "__main__.py")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the kdpipe modules it imports. ``from package import module`` is an edge to the module
    alone, as ``from package.module import name`` is: the package's face is not what is used."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
                named = [alias for alias in node.names if f"{node.module}.{alias.name}" not in modules]
                edges |= submodules | ({node.module} if named else set())
        graph[name] = edges - {name}
    return graph


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kdpipe"


def test_every_folder_of_the_package_has_a_layer() -> None:
    folders = {_folder(m) for m in _graph()} - {"kdpipe"}
    assert folders == set(RANK), folders ^ set(RANK)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _folder(target) != "kdpipe" and _folder(module) != "kdpipe"
        if RANK[_folder(target)] > RANK[_folder(module)]
    )
    assert upward == []


def test_the_science_core_imports_neither_config_tracking_nor_steps() -> None:
    forbidden = ("kdpipe.config", "kdpipe.tracking", "kdpipe.steps")
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if _folder(module) in ("distill", "models")
        for target in targets
        if target.startswith(forbidden)
    )
    assert offenders == []


def test_tracking_imports_no_step() -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if _folder(module) == "tracking"
        for target in targets
        if target.startswith("kdpipe.steps")
    )
    assert offenders == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` with more than one member, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(circles)


def test_the_circle_finder_finds_a_planted_circle_and_nothing_in_a_chain() -> None:
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(planted) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_is_left() -> None:
    assert _circles(_graph()) == []


def test_importing_every_kdpipe_module_leaves_pipelines_and_components_out() -> None:
    probe = (
        "import importlib, sys\n"
        f"for name in {_library_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ORCHESTRATION!r}))\n"
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
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kfp', 'kdpipe_components')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_the_installed_packages_are_the_package_folders_under_names_of_their_own() -> None:
    """pyproject lists the packages (the folder mapping needs it): a new folder must not be left out of
    the image, and nothing installs as a bare ``components`` or ``pipelines``."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {_module_name(p.parent) if p.parent != SRC else "kdpipe" for p in SRC.rglob("__init__.py")}
    folders = {f.removesuffix(".__init__") for f in folders}
    assert set(tool["packages"]) == folders | set(ORCHESTRATION)
    assert tool["package-dir"] == {"": "src", "kdpipe_components": "components", "kdpipe_pipelines": "pipelines"}


def test_only_the_cli_components_and_study_runner_import_the_steps() -> None:
    callers = {_module_name(p) for p in SRC.rglob("*.py") if "kdpipe.steps" in _imports(p)}
    assert callers <= STEP_CALLERS, callers - STEP_CALLERS


def test_each_dvc_stage_runs_the_verb_its_step_declares() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    by_verb = {s.verb: s for s in spec.STEPS.values()}
    commands = {name: stage["cmd"] for name, stage in stages.items() if stage["cmd"].startswith("kdpipe ")}
    assert commands, stages.keys()
    for name, command in commands.items():
        step = by_verb[command.split()[1]]
        assert command in (f"kdpipe {step.verb}", step.rerun), (name, command)


def test_each_step_in_the_table_is_named_by_its_key_and_verbs_are_unique() -> None:
    assert all(key == step.name for key, step in spec.STEPS.items())
    verbs = [step.verb for step in spec.STEPS.values()]
    assert len(verbs) == len(set(verbs))


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


def test_modules_steps_and_components_stay_small() -> None:
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 300} == {}
    assert {name: n for name, n in sizes.items() if name.startswith("steps/") and n > 260} == {}
    components = {p.name: len(p.read_text().splitlines()) for p in (REPO / "components").glob("*.py")}
    assert components and {name: n for name, n in components.items() if n > 35} == {}
