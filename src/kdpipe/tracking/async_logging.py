"""A run's metrics and tags, sent to MLflow from a background thread so training never waits on the server.

The training loop only appends to a queue. One daemon thread sends the batches in order with
``MlflowClient.log_batch``; while the store cannot be reached (``reachable`` is false, or a request
fails) the batch waits and is tried again every ``poll_s`` seconds. A metric keeps the timestamp of
the moment it was logged, so sending a batch again after a lost reply stores nothing twice (MLflow
drops a row identical in key, step, timestamp and value). A step calls :meth:`AsyncRunLogger.flush`
before anything that must block, and bounds the wait with ``tracking.retry_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


class AsyncRunLogger:
    """The send queue of one MLflow run."""

    def __init__(self, client: Any, run_id: str, reachable: Callable[[], bool], poll_s: float = 1.0) -> None:
        self._client, self._run_id, self._reachable, self._poll_s = client, run_id, reachable, poll_s
        self._queue: deque[tuple[list[Any], list[Any]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.down_since: float | None = None  # time.monotonic() of the first failure of the current outage
        self.last_error = ""
        self._thread = threading.Thread(target=self._loop, name=f"mlflow-log-{run_id[:8]}", daemon=True)
        self._thread.start()

    def put(self, metrics: Sequence[Any] = (), tags: Sequence[Any] = ()) -> None:
        """Queue ``mlflow.entities.Metric`` and ``RunTag`` objects; returns at once."""
        with self._cond:
            self._queue.append((list(metrics), list(tags)))
            self._cond.notify_all()

    @property
    def unsent(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued batch is stored, for at most ``timeout_s``; True when all were."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Stop the thread once the queue is empty, or at its next failed attempt."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                metrics, tags = self._queue[0]
            sent = self._send(metrics, tags)
            with self._cond:
                if sent:
                    self._queue.popleft()
                    self._cond.notify_all()
                elif self._closed:
                    return
                else:
                    self._cond.wait(self._poll_s)

    def _send(self, metrics: list[Any], tags: list[Any]) -> bool:
        try:
            if not self._reachable():
                raise ConnectionError("the tracking server does not answer /health")
            self._client.log_batch(self._run_id, metrics=metrics, tags=tags)
        except Exception as exc:  # any failure is retried; the step decides when to give up
            if self.down_since is None:
                self.down_since = time.monotonic()
            self.last_error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return False
        self.down_since = None
        return True
