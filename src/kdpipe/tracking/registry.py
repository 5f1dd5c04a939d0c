"""The MLflow model registry as kdpipe uses it: aliases, version tags, a promotion lock, models:/ URIs.

MLflow has no compare-and-set on aliases, so two promotions racing could each read the old champion
and each move it. The registry itself provides the mutex: registered-model names are unique, so
creating ``<name>.promotion-lock`` succeeds for exactly one caller (acquire) and deleting it
releases. A holder that died leaves a stale lock; a waiter takes it over once it is older than
``stale_after_s`` (judged by the server's creation time, or by how long this waiter has watched the
same holder, whichever says stale first, so clock skew cannot keep it forever).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError, TrackingError
from kdpipe.models.file import MODEL_FILE
from kdpipe.tracking import tags
from kdpipe.tracking.server import check_tracking, fluent_uri

log = logging.getLogger("kdpipe")

CHAMPION = "champion"
CHALLENGER = "challenger"
LOCK_SUFFIX = ".promotion-lock"
STALE_AFTER_S = 600.0
WAIT_S = 900.0
POLL_S = 0.25
MAX_POLL_S = 2.0
CARD_LINE = "Model card (Markdown and JSON, in the promote run's artifacts): "
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def client(tracking_uri: str) -> Any:
    """A client whose registry is the tracking store: every registry call below goes through it."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def connect(params: Params, what: str) -> Any:
    """The registry's client for ``what``: tracking must be on and its server reachable."""
    if not params.tracking.enabled:
        raise KdpipeError(f"tracking.enabled: {what} needs the MLflow registry; it is off")
    check_tracking(params)
    return client(params.tracking.uri)


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


def version_by_alias(mlflow_client: Any, name: str, alias: str) -> Any | None:
    """The model version ``alias`` points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def get_version(mlflow_client: Any, name: str, version: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def find_version_by_tag(mlflow_client: Any, name: str, key: str, value: str) -> Any | None:
    """The version of ``name`` whose tag ``key`` is ``value`` (a rerun of promote must not duplicate one)."""
    for mv in mlflow_client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(key) == value:
            return mv
    return None


def exists(mlflow_client: Any, name: str) -> bool:
    """Whether the registered model ``name`` exists."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException as exc:
        if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def register_version(
    mlflow_client: Any,
    name: str,
    model_uri: str,
    run_id: str | None,
    version_tags: dict[str, str],
    description: str = "students distilled by kdpipe; aliases champion/challenger",
) -> Any:
    """A new version of ``name`` (created on first use, with ``description``) from a logged model."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    # A local (SQLite) registry looks the logged model up through MLflow's process-wide URI.
    with fluent_uri(mlflow_client.tracking_uri):
        mv = mlflow_client.create_model_version(name, model_uri, run_id=run_id, tags=version_tags, model_id=model_id)
    if (
        model_id is not None
    ):  # the logged model's page lists its versions from this tag, as mlflow.register_model writes it
        listed = json.loads(mlflow_client.get_logged_model(model_id).tags.get(tags.LOGGED_MODEL_VERSIONS, "[]"))
        mlflow_client.set_logged_model_tags(
            model_id, {tags.LOGGED_MODEL_VERSIONS: json.dumps([*listed, {"name": mv.name, "version": str(mv.version)}])}
        )
    return mv


@dataclass(frozen=True)
class LockHandle:
    name: str
    owner: str


@contextlib.contextmanager
def promotion_lock(
    mlflow_client: Any,
    name: str,
    *,
    stale_after_s: float = STALE_AFTER_S,
    wait_s: float = WAIT_S,
    poll_s: float = POLL_S,
) -> Iterator[LockHandle]:
    """Hold the registry-wide promotion mutex for ``name`` while the body runs."""
    from mlflow.exceptions import MlflowException

    lock = name + LOCK_SUFFIX
    owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    watched: dict[str, float] = {}
    polls = 0
    while True:
        try:
            mlflow_client.create_registered_model(
                lock,
                tags={tags.LOCK_OWNER: owner},
                description=f"held by a kdpipe promotion of {name}; deleted on release",
            )
            break
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = mlflow_client.get_registered_model(lock)
        except MlflowException as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                continue  # released between our create and our read: try again at once
            raise
        holder = held.tags.get(tags.LOCK_OWNER, "?")
        if holder == owner:
            break  # our create went through although its reply was lost
        first_seen = watched.setdefault(holder, time.monotonic())
        age = time.time() - held.creation_timestamp / 1000
        if age > stale_after_s or time.monotonic() - first_seen > stale_after_s:
            log.warning("promote: taking over the stale lock %s held by %s for %.0fs", lock, holder, age)
            _delete_if_held_by(mlflow_client, lock, holder)
            continue
        if time.monotonic() - started > wait_s:
            raise TrackingError(
                f"registry: the promotion lock {lock!r} has been held by {holder} for {age:.0f}s; if no promotion "
                f"is running, delete the registered model {lock!r}"
            )
        # Back off with jitter: waiters polling in step would keep a SQLite-backed store busy.
        time.sleep(random.uniform(0.5, 1.0) * min(MAX_POLL_S, poll_s * 1.5**polls))
        polls += 1
    try:
        yield LockHandle(lock, owner)
    finally:
        _delete_if_held_by(mlflow_client, lock, owner)


def _delete_if_held_by(mlflow_client: Any, lock: str, owner: str) -> None:
    """Release ``lock`` only while ``owner`` still holds it (never someone else's fresh lock)."""
    from mlflow.exceptions import MlflowException

    try:
        if mlflow_client.get_registered_model(lock).tags.get(tags.LOCK_OWNER) == owner:
            mlflow_client.delete_registered_model(lock)
    except MlflowException as exc:
        if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise


def link_card(mlflow_client: Any, name: str, version: str, uri: str) -> None:
    """Point version ``version`` at its model card ``uri`` (a tag, and a line closing its description)."""
    mlflow_client.set_model_version_tag(name, version, tags.MODEL_CARD_URI, uri)
    described = (get_version(mlflow_client, name, version).description or "").split(CARD_LINE)[0].rstrip()
    mlflow_client.update_model_version(name, version, description=f"{described}\n\n{CARD_LINE}`{uri}`")


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` -> (name, alias, None); ``models:/name/3`` -> (name, None, '3')."""
    found = _MODELS_URI.match(uri)
    if not found:
        raise KdpipeError(f"{uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return found["name"], found["alias"], found["version"]


def resolve(mlflow_client: Any, uri: str) -> Any:
    """The model version a ``models:/`` URI names, with a clear error when it does not exist."""
    name, alias, version = parse_models_uri(uri)
    mv = version_by_alias(mlflow_client, name, alias) if alias else get_version(mlflow_client, name, str(version))
    if mv is None:
        what = f"alias {alias!r}" if alias else f"version {version}"
        raise KdpipeError(f"{uri}: the registered model {name!r} has no {what}")
    return mv


def _download(mlflow_client: Any, name: str, version: str, path: str, dst: Path) -> Path:
    """One file or folder of a registered version's model, fetched through ``mlflow_client`` alone.

    ``models:/`` URIs would be resolved against MLflow's process-wide registry URI, so the
    version's own artifact location is asked of this client and downloaded from there.
    """
    import mlflow

    root = mlflow_client.get_model_version_download_uri(name, version).rstrip("/")
    dst.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{root}/{path}" if path else root,
        dst_path=tempfile.mkdtemp(dir=dst),
        tracking_uri=mlflow_client.tracking_uri,
    )
    return Path(local)


def fetch_checkpoint(mlflow_client: Any, uri: str, dst: Path) -> tuple[Path, Any]:
    """Download the kdpipe checkpoint logged with a registered version; returns (path, version)."""
    mv = resolve(mlflow_client, uri)
    try:
        local = _download(mlflow_client, mv.name, str(mv.version), f"extra_files/{MODEL_FILE}", dst)
    except Exception as exc:
        raise KdpipeError(
            f"{uri}: version {mv.version} carries no kdpipe checkpoint (extra_files/{MODEL_FILE}); "
            f"register models logged by kdpipe ({type(exc).__name__})"
        ) from None
    return local, mv


def fetch_model(mlflow_client: Any, uri: str, dst: Path) -> tuple[Path, Any]:
    """The whole model folder of the version a ``models:/`` URI names (MLmodel, data/, extra files), downloaded
    into ``dst``; returns (folder, version)."""
    mv = resolve(mlflow_client, uri)
    return _download(mlflow_client, mv.name, str(mv.version), "", dst), mv


def fetch_run_model(tracking_uri: str, uri: str, dst: Path) -> Path:
    """The model folder a ``runs:/<run id>/<path>`` URI names, downloaded into ``dst``."""
    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=tracking_uri))


def load_serving(mlflow_client: Any, name: str, version: str, dst: Path) -> Any:
    """The exported serving module of a registered version (float images in [0, 1] in, logits out),
    downloaded into ``dst`` and loaded from there."""
    import mlflow

    return mlflow.pytorch.load_model(str(_download(mlflow_client, name, version, "", dst)))
