"""``runtime.progress`` governs every progress display, data work's as well as training's: ``off`` is silent,
``log`` writes lines, ``auto`` writes lines where stderr is not a terminal (as under pytest)."""

from __future__ import annotations

import pytest

from kdpipe.data import progress as data_progress
from kdpipe.data.progress import display, progress


@pytest.mark.parametrize(("mode", "lines"), [("log", 3), ("auto", 3), ("off", 0)])
def test_data_progress_writes_a_line_per_interval_unless_runtime_progress_is_off(
    mode: str, lines: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(data_progress, "LOG_EVERY_S", 0.0)  # every advance is an interval
    with caplog.at_level("INFO", logger="kdpipe"), progress("prepare: reading images", 3, mode=mode) as bar:
        for _ in range(3):
            bar.advance()
    written = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prepare: reading images")]
    assert len(written) == lines
    if lines:
        assert written[-1].startswith("prepare: reading images: 3/3 img (")


def test_auto_is_a_bar_on_a_terminal_only_and_the_other_modes_say_what_they_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data_progress.sys.stderr, "isatty", lambda: True)
    assert display("auto") == "bar"
    monkeypatch.setattr(data_progress.sys.stderr, "isatty", lambda: False)
    assert [display(m) for m in ("auto", "bar", "log", "off")] == ["log", "bar", "log", "off"]
