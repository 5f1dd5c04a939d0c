"""Every script in ``benchmarks/`` still loads against today's code.

The benchmarks are not run in CI (they time things, and these machines are shared), so a refactor that moves a
name they import would otherwise go unnoticed until someone needs a measurement: ``benchmarks/step.py`` imported
``build_optimizer`` from a module it had left for a release before this test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_the_benchmark_script_imports_and_its_parser_if_any_prints_help(script: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse = getattr(module, "parse_args", None)
    if parse is not None:
        with pytest.raises(SystemExit) as shown:
            parse(["--help"])
        assert shown.value.code == 0
