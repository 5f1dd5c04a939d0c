"""A teacher from MLflow: ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or ``runs:/<run id>/<path>``.

Any classifier logged with ``mlflow.pytorch`` qualifies, pickle or pt2 (:mod:`kdpipe.teacher.formats` reads
the folder), and so does a model kdpipe logged itself: its ``model.pt`` rides along in ``extra_files`` and
is read as a kdpipe file. The class names may come with the model: a ``classes`` (or ``kdpipe.classes``) tag,
a JSON list, on the version or its registered model, or a ``classes.txt`` (one a line) in the model folder
or its extra files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from kdpipe.config import TrackingConfig
from kdpipe.infra.errors import KdpipeError
from kdpipe.models.file import MODEL_FILE
from kdpipe.teacher import formats
from kdpipe.teacher.classes import CLASSES_FILE, read_file
from kdpipe.tracking import registry, tags

URI_SCHEMES = ("models:/", "runs:/")


def is_uri(source: str) -> bool:
    return source.startswith(URI_SCHEMES)


@dataclass(frozen=True)
class Fetched:
    """An MLflow model downloaded: its folder, the version it resolved to, and its class names if it carries them."""

    folder: Path
    version: str
    classes: list[str] | None


def _tagged_classes(*tag_sets: dict[str, str]) -> list[str] | None:
    for found in tag_sets:
        for key in (tags.MODEL_CLASSES, tags.CLASSES):
            if key not in found:
                continue
            try:
                value = json.loads(found[key])
            except ValueError:
                value = None
            if not isinstance(value, list):
                raise KdpipeError(f"the model's '{key}' tag is not a JSON list of class names")
            return [str(c) for c in value]
    return None


def _file_classes(folder: Path) -> list[str] | None:
    for path in (folder / CLASSES_FILE, folder / "extra_files" / CLASSES_FILE):
        if path.is_file():
            return read_file(path, "the model's classes.txt")
    return None


def fetch(tracking: TrackingConfig, source: str, dst: Path) -> Fetched:
    """Download the model ``source`` names into ``dst`` through the registry at ``tracking.uri``."""
    if not tracking.enabled:
        raise KdpipeError(
            f"teacher.source {source}: an MLflow teacher needs tracking.enabled (the store at tracking.uri)"
        )
    if source.startswith("runs:/"):
        folder = registry.fetch_run_model(tracking.uri, source, dst)
        return Fetched(folder, source, _file_classes(folder))
    client = registry.client(tracking.uri)
    folder, mv = registry.fetch_model(client, source, dst)
    model_tags = client.get_registered_model(mv.name).tags
    return Fetched(folder, f"{mv.name}/{mv.version}", _tagged_classes(mv.tags, model_tags) or _file_classes(folder))


def load(fetched: Fetched, *, trust_pickle: bool) -> formats.Loaded:
    """The fetched model: kdpipe's checkpoint when it carries one, else the ``mlflow.pytorch`` model itself."""
    own = fetched.folder / "extra_files" / MODEL_FILE
    if own.exists():
        return formats.load(own, arch="", image_size=None, trust_pickle=False)
    loaded = formats.load(fetched.folder, arch="", image_size=None, trust_pickle=trust_pickle)
    return replace(loaded, classes=fetched.classes)
