"""SIGTERM's deadline (kdpipe.infra.termination): a step that does not stop within runtime.termination_grace_s
exits on its own with one line and status 143, before Kubernetes' SIGKILL would leave nothing said. The normal
path, a step that stops at once and resumes exactly, is tested on `kdpipe distill` in test_training."""

from __future__ import annotations

import subprocess
import sys

STUCK = """
import os, signal, time
from kdpipe.infra.errors import Terminated
from kdpipe.infra.termination import stop_on_sigterm
with stop_on_sigterm(0.5):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    except Terminated:
        print("terminated", flush=True)
        time.sleep(30)  # a call that does not come back to Python in time
print("not reached", flush=True)
"""


def test_a_block_still_running_after_the_grace_period_exits_143_with_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", STUCK], capture_output=True, text=True, timeout=20)
    assert done.returncode == 143
    assert done.stdout == "terminated\n"
    assert done.stderr.splitlines() == [
        "kdpipe: still running 0.5 s after SIGTERM (runtime.termination_grace_s): exiting; rerun with --resume to "
        "continue from the last checkpoint"
    ]
