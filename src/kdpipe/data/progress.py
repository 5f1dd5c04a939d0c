"""Progress of long work, as ``runtime.progress`` asks: a bar on a terminal, a log line otherwise, or nothing.

:func:`display` resolves the setting once for every kind of progress (data work here, training epochs in
:mod:`kdpipe.training.loop`): ``auto`` is a tqdm bar when stderr is a TTY and log lines elsewhere (a pod's log,
a test); ``bar``, ``log`` and ``off`` say what they do. :class:`Progress` counts data work (decoding a set,
hashing its tensors): its bar shows the rate and an ETA; its log mode writes a line every :data:`LOG_EVERY_S`
seconds, so a job's log shows it is alive without one line per image; work shorter than that prints nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("kdpipe")
LOG_EVERY_S = 30.0


def display(mode: str) -> str:
    """``runtime.progress`` resolved for this process: ``bar``, ``log`` or ``off``."""
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


class Progress:
    """Counts done units of ``total``; :meth:`advance` after each batch of them. ``mode``: ``runtime.progress``."""

    def __init__(self, what: str, total: int, unit: str, mode: str = "auto") -> None:
        self.what, self.total, self.unit, self.done = what, total, unit, 0
        self.start = self.last = time.monotonic()
        self.bar, self.mode = None, display(mode)
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=unit, unit_scale=True, leave=False, file=sys.stderr)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if self.mode == "off":
            return
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            log.info(
                "%s: %d/%d %s (%.0f %s/s, about %.0f s left)",
                self.what,
                self.done,
                self.total,
                self.unit,
                rate,
                self.unit,
                eta,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def progress(what: str, total: int, unit: str = "img", mode: str = "auto") -> Iterator[Progress]:
    bar = Progress(what, total, unit, mode)
    try:
        yield bar
    finally:
        bar.close()
