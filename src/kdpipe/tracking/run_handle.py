"""A handle on one step's open MLflow run: metrics and tags through the async queue, artifacts,
models and data sets at once after the queue drains; every method a no-op when tracking is off."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from kdpipe.infra import files
from kdpipe.infra.errors import TrackingOutageError
from kdpipe.tracking import datasets, tags
from kdpipe.tracking.async_logging import AsyncRunLogger
from kdpipe.tracking.logged_models import log_classifier, log_onnx_model


class StepRun:
    """A handle on one step's MLflow run; every method is a no-op when tracking is off.

    Metrics and tags go through an :class:`AsyncRunLogger` and never block. Artifacts and models
    are sent at once, after the queue has drained: when MLflow stays away for ``retry_seconds``
    the step ends with :class:`TrackingOutageError`, its files already written.
    """

    def __init__(
        self,
        client: Any = None,
        run_id: str = "",
        uri: str = "",
        sender: AsyncRunLogger | None = None,
        retry_seconds: float = 0.0,
        step: str = "",
        pipeline_run_id: str = "",
        rerun: str | None = None,
    ) -> None:
        self.active = client is not None
        self.client, self.run_id, self.uri, self.sender = client, run_id, uri, sender
        self.retry_seconds, self.step, self.pipeline_run_id = retry_seconds, step, pipeline_run_id
        self.rerun = rerun
        self.logged_steps: set[int] = set()

    def log_metrics(
        self,
        metrics: dict[str, Any],
        step: int | None = None,
        *,
        model_id: str | None = None,
        dataset: tuple[str, str] | None = None,
    ) -> None:
        """Numbers only; ``model_id`` and ``dataset`` (name, digest) link them to a LoggedModel's page."""
        if self.sender is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        dataset_name, dataset_digest = dataset or (None, None)
        self.sender.put(
            metrics=[
                Metric(
                    k,
                    float(v),
                    now,
                    step or 0,
                    model_id=model_id,
                    dataset_name=dataset_name,
                    dataset_digest=dataset_digest,
                    run_id=self.run_id,
                )
                for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
        )
        if step is not None:
            self.logged_steps.add(step)

    def log_epochs(self, history: list[dict[str, Any]]) -> None:
        """Each epoch's record at its step, unless this run logged it already (a resumed run's earlier epochs)."""
        for record in history:
            if record["epoch"] not in self.logged_steps:
                self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, record["epoch"])

    def set_tags(self, values: dict[str, Any]) -> None:
        if self.sender is not None:
            from mlflow.entities import RunTag

            self.sender.put(tags=[RunTag(k, str(v)) for k, v in values.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.active and Path(path).exists():
            self.wait_online()
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.active:
            self.wait_online()
            self.client.log_text(self.run_id, text, artifact_file)

    def log_classifier(
        self, model: torch.nn.Module, checkpoint: Path, manifest: dict[str, Any], name: str = "student"
    ) -> dict[str, str] | None:
        """Log ``model`` as an MLflow model (see :func:`log_classifier`); None when tracking is off."""
        if not self.active:
            return None
        self.wait_online()
        return log_classifier(model, checkpoint, manifest, name, tracking_uri=self.uri, run_id=self.run_id)

    def log_onnx(self, exported: dict[str, Path], manifest: dict[str, Any]) -> dict[str, str]:
        """Log each exported file (by the version tag that will point at it) with the onnx flavour; returns
        {tag: model URI}, empty with tracking off."""
        if not self.active:
            return {}
        self.wait_online()
        return {
            tag: log_onnx_model(path, manifest, path.stem, tracking_uri=self.uri, run_id=self.run_id)
            for tag, path in exported.items()
        }

    def log_student(self, model: torch.nn.Module, model_path: Path, manifest: dict[str, Any]) -> None:
        """Log the student as the MLflow model ``student`` and note where beside its file, for the steps
        after; with tracking off, remove a note that would describe another model."""
        note = model_path.parent / files.MODEL_RECORD_FILE
        logged = self.log_classifier(model, model_path, manifest)
        if logged:
            files.write_json(note, {**logged, "model_sha256": files.file_sha256(model_path)})
        else:
            note.unlink(missing_ok=True)

    def log_datasets(
        self, manifest: dict[str, Any], directory: Path, contexts: dict[str, str], extra: tuple[Any, ...] = ()
    ) -> None:
        """The splits this step read, as MLflow dataset inputs (``contexts``: split -> what it was used for),
        and ``extra`` inputs (other data sets it read)."""
        if self.active:
            self.wait_online()
            self.client.log_inputs(
                self.run_id,
                datasets=[
                    datasets.split_input(manifest, split, directory, context) for split, context in contexts.items()
                ]
                + list(extra),
            )

    def describe(self, markdown: str) -> None:
        """The run page's description."""
        self.set_tags({tags.RUN_DESCRIPTION: markdown})

    def wait_online(self) -> None:
        """Return once every queued metric and tag is stored; raise after ``retry_seconds`` without MLflow."""
        if self.sender is None or self.sender.flush(self.retry_seconds):
            return
        down = time.monotonic() - (self.sender.down_since or time.monotonic())
        raise TrackingOutageError(
            f"tracking: MLflow at {self.uri} has not answered for {down:.0f} s ({self.sender.last_error}); "
            "gave up after "
            f"tracking.retry_seconds={self.retry_seconds:g} with {self.sender.unsent} update(s) unsent. The files this "
            f"step wrote are complete on disk: once MLflow is back, {self._rerun_hint()}"
        )

    def _rerun_hint(self) -> str:
        if self.rerun is None:
            return f"run the {self.step} step again; it closes the run left open ({self.run_id})"
        return (
            f"`{self.rerun}` logs them under pipeline run id {self.pipeline_run_id} and closes the run left open "
            f"({self.run_id})"
        )
