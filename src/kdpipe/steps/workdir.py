"""One pipeline per working directory: advisory locks on the ``paths.*`` directories, and pre-flight checks.

A step holds an exclusive ``flock`` on every directory it writes and a shared one on every directory
it reads, for its whole run (``writes`` and ``reads`` of its :class:`~kdpipe.steps.spec.Step`). The
lock file sits beside the directory (``artifacts/.student.kdpipe-lock``), outside what DVC tracks,
and names its holder. So a second
``kdpipe run``, or a ``kdpipe prepare`` that would replace the data a running step reads, is refused
at once with the holder's pid and start time, while study workers that only read the shared data and
teacher run side by side. The kernel drops the locks of a killed process: a stale lock needs no
clean-up. Locks are re-entrant within a process (``kdpipe run`` holds them all; its steps take them
again). Under DDP only rank 0 takes them.

Before any work a step also checks that each directory it writes can be written (:func:`claim`) and,
once it knows the model's size, that the file system has room for what it will write
(:func:`kdpipe.infra.files.need_space`). A read-only or full disk is then a one-line error before the
first epoch.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import WorkdirBusyError, WriteError
from kdpipe.infra.files import existing_ancestor, write_cause
from kdpipe.steps.pipeline_run import with_pipeline_run_id
from kdpipe.steps.spec import Step

LOCK_SUFFIX = ".kdpipe-lock"


@dataclass
class _Held:
    fd: int
    exclusive: bool
    count: int


_held: dict[Path, _Held] = {}  # this process's lock files; re-entrancy needs to know them
_held_guard = threading.Lock()


def lock_path(directory: Path) -> Path:
    directory = Path(directory).resolve()
    return directory.parent / f".{directory.name}{LOCK_SUFFIX}"


def owner(params: Params, step: Step) -> str | None:
    """Host and directory of the step's first output: a run tagged with it belongs to whoever holds its lock.

    None for a step that writes no directory (and so takes no lock)."""
    if not step.writes:
        return None
    return f"{socket.gethostname()}:{Path(getattr(params.paths, step.writes[0])).resolve()}"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return (
            f"pid {info['pid']} on {info['host']} ({info['step']}, pipeline run {info['pipeline_run_id']}, "
            f"started {started})"
        )
    except (OSError, ValueError, KeyError):
        return "another process"


def _acquire(directory: Path, exclusive: bool, record: Mapping[str, object]) -> Path | None:
    """Take one lock; None when a read-only place makes a shared lock impossible (and unneeded)."""
    path = lock_path(directory)
    with _held_guard:
        held = _held.get(path)
        if held is not None:
            if exclusive and not held.exclusive:
                try:
                    fcntl.flock(held.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise WorkdirBusyError(
                        f"{directory}: in use by {_holder(path)}; wait for it or point paths.* elsewhere"
                    ) from None
                held.exclusive = True
            held.count += 1
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if not exclusive:
                return None  # nobody can write a read-only input either
            raise WriteError(
                f"{directory}: cannot write ({write_cause(exc)}); checked before any work, nothing was changed"
            ) from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirBusyError(
                f"{directory}: in use by {_holder(path)}; wait for it to finish or point paths.* elsewhere"
            ) from None
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(dict(record)).encode(), 0)
        _held[path] = _Held(fd, exclusive, 1)
        return path


def _release(path: Path) -> None:
    with _held_guard:
        held = _held[path]
        held.count -= 1
        if held.count == 0:
            del _held[path]
            os.close(held.fd)  # closing drops the flock


def _check_writable(directory: Path) -> None:
    """Create and remove a file where the step will write, creating nothing that stays."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".kdpipe-write-check.", dir=existing_ancestor(directory))
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise WriteError(
            f"{directory}: cannot write ({write_cause(exc)}); checked before any work, nothing was changed"
        ) from None


@contextlib.contextmanager
def claim(params: Params, step: Step, *, main: bool = True) -> Iterator[None]:
    """Hold the step's directories for the body, after checking that the ones it writes can be written."""
    if not main:
        yield
        return
    writes, reads = step.writes, step.reads
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "step": step.name,
        "started": time.time(),
        "pipeline_run_id": params.tracking.pipeline_run_id,
    }
    wanted = {Path(getattr(params.paths, key)): False for key in reads}
    wanted.update({Path(getattr(params.paths, key)): True for key in writes})
    taken: list[Path] = []
    try:
        for directory in sorted(wanted, key=lambda d: str(d.resolve())):
            if wanted[directory]:
                _check_writable(directory)
            path = _acquire(directory, wanted[directory], record)
            if path is not None:
                taken.append(path)
        yield
    finally:
        for path in reversed(taken):
            _release(path)


def claims(step: Step) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a step: it runs under its pipeline run id, holding its directories (rank 0 only, see ``rank=``)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(params: Params, *args: Any, **kwargs: Any) -> Any:
            params = with_pipeline_run_id(params)
            with claim(params, step, main=kwargs.get("rank", 0) == 0):
                return fn(params, *args, **kwargs)

        return run

    return wrap
