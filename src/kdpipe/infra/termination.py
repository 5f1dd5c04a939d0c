"""SIGTERM answered like Ctrl-C: how a step stops when Kubernetes evicts, preempts or drains its pod.

Kubernetes sends SIGTERM, waits ``terminationGracePeriodSeconds`` and then sends SIGKILL. Python's default for
SIGTERM is to die at once, with no message and the MLflow run left RUNNING. Inside :func:`stop_on_sigterm` the
signal raises :class:`~kdpipe.infra.errors.Terminated` in the main thread instead: every ``finally`` runs, a
checkpoint being written is left whole (writes go to a temporary file and are renamed), the step's run ends
KILLED with the reason, and the process exits with 143, the status a shell gives SIGTERM. Should the block
still be running ``grace_s`` seconds later (a call that does not return to Python), it prints one line and exits
143 itself, before the SIGKILL that would leave nothing said.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from kdpipe.infra.errors import Terminated

EXIT_STATUS = 128 + signal.SIGTERM


def _exit_late(grace_s: float) -> None:
    print(
        f"kdpipe: still running {grace_s:g} s after SIGTERM (runtime.termination_grace_s): exiting; rerun with "
        "--resume to continue from the last checkpoint",
        file=sys.stderr,
        flush=True,
    )
    os._exit(EXIT_STATUS)


@contextlib.contextmanager
def stop_on_sigterm(grace_s: float) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and arms a ``grace_s`` deadline; the handler before
    is restored after it. Outside the main thread (where no handler can be set) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    deadlines: list[threading.Timer] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        deadline = threading.Timer(grace_s, _exit_late, (grace_s,))
        deadline.daemon = True
        deadline.start()
        deadlines.append(deadline)
        raise Terminated("SIGTERM: the pod was asked to stop (an eviction, a preemption or a node drain)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        for deadline in deadlines:  # the step has stopped: what follows is the caller's one line and exit
            deadline.cancel()
