"""The documentation: the mkdocs site builds strictly, the README stays a front door, the reference is whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


def _leaf_keys(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [key for name, child in node.items() for key in _leaf_keys(child, f"{prefix}{name}.")]
    return [prefix.rstrip(".")]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, bool]:
    """One strict build of the site into a temporary directory, shared by the tests below."""
    site = tmp_path_factory.mktemp("site")
    docs_before = _files(ROOT / "docs")
    had_site = (ROOT / "site").exists()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wrote_into_checkout = _files(ROOT / "docs") != docs_before or (not had_site and (ROOT / "site").exists())
    return result, site, wrote_into_checkout


def test_the_docs_site_builds_strictly_and_writes_nothing_into_the_checkout(built_site) -> None:
    """A broken link, a missing anchor or a page left out of the nav fails the build; the build goes to
    its -d directory only, so checking the docs never leaves files beside the sources."""
    result, site, wrote_into_checkout = built_site
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").is_file()
    assert not wrote_into_checkout


def test_the_readme_stays_a_front_door_of_at_most_250_non_empty_lines() -> None:
    """The README is the front door; every topic lives on a docs page, so it must not grow back into a notebook."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert len(lines) <= 250, f"README.md has {len(lines)} non-empty lines; move topics to docs/"


def test_the_generated_configuration_reference_lists_every_leaf_key_of_params_yaml(built_site) -> None:
    """The reference is generated from the schema at build time: a key params.yaml has must be on the page,
    spelt as params.yaml spells it (validate, not the schema's validate_)."""
    result, site, _ = built_site
    assert result.returncode == 0, result.stdout + result.stderr
    page = (site / "configuration" / "reference" / "index.html").read_text()
    keys = _leaf_keys(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert "validate.deploy_format" in keys and "train.subset" in keys
    missing = [key for key in keys if f"<code>{key}</code>" not in page]
    assert not missing, f"the configuration reference lacks {missing}"
