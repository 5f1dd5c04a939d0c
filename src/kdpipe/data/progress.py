"""Progress of long data work (decoding a set, hashing its tensors): a bar on a terminal, a log line otherwise.

On a terminal (stderr is a TTY) tqdm draws a bar with the rate and an ETA. Elsewhere (a pod's log, a test)
a line every :data:`LOG_EVERY_S` seconds says how far it got, so a job's log shows it is alive without
one line per image; work shorter than that prints nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("kdpipe")
LOG_EVERY_S = 30.0


class Progress:
    """Counts done units of ``total``; :meth:`advance` after each batch of them."""

    def __init__(self, what: str, total: int, unit: str) -> None:
        self.what, self.total, self.unit, self.done = what, total, unit, 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=unit, unit_scale=True, leave=False, file=sys.stderr)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
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
def progress(what: str, total: int, unit: str = "img") -> Iterator[Progress]:
    bar = Progress(what, total, unit)
    try:
        yield bar
    finally:
        bar.close()
