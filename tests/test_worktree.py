"""The suite leaves the checkout as it found it: nothing new, changed or removed, ignored files included."""

from __future__ import annotations

import pytest

from conftest import REPO, WORKTREE, worktree_state


@pytest.mark.last
def test_the_suite_leaves_the_checkout_as_it_found_it(request: pytest.FixtureRequest) -> None:
    """Runs after every other selected test (conftest orders tests marked ``last`` at the end) and
    compares the work tree with the snapshot conftest took when the session started.

    Why: a test that writes into the checkout, e.g. MLflow run artifacts that land in ./mlruns because
    the SQLite store was created with the cwd at the repository root, leaves files that no tracking
    store lists, that the next run may read back, and that nobody notices because .gitignore hides
    them. So the snapshot is of the files themselves, ignored ones included (mlruns/, artifacts/,
    mlartifacts/, .dvc/tmp, data/ ...), with the mtime and size of each; only caches (__pycache__,
    .pytest_cache, .ruff_cache), .git and .venv are left out. With a subset of tests selected it
    checks what that subset did. An edit made in the checkout while the tests run is reported too:
    the check cannot tell who wrote a file.
    """
    before, after = request.config.stash[WORKTREE], worktree_state()
    new = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    lines = [f"  new      {p}" for p in new] + [f"  changed  {p}" for p in changed]
    lines += [f"  removed  {p}" for p in removed]
    if lines:
        pytest.fail(f"the test session changed {len(lines)} path(s) in {REPO}:\n" + "\n".join(lines), pytrace=False)
