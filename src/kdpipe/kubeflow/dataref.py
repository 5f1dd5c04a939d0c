"""The prepared data set as a Kubeflow Dataset artifact: its files, or a reference to where they live.

A small data set travels as the artifact itself, copied between steps by Kubeflow. One too large
to copy stays where it is, and the artifact holds its manifest plus a reference:

- ``""``: no reference, the artifact is the data;
- ``pvc:/mnt/data/prepared`` (or any absolute path): a directory on a mounted volume;
- ``s3://bucket/prefix``: an S3 prefix (endpoint and credentials from the environment);
- ``dvc+<repo>@<rev>#<path>``: a prepared data set versioned with DVC at a git revision.

Readers check what they fetch against the sha256 the artifact recorded, so a reference that moved
under a run is an error, never silently different data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from kdpipe.config import Params
from kdpipe.data.prepared import MANIFEST_FILE, TENSORS_FILE
from kdpipe.errors import DataError
from kdpipe.files import atomic_write_text
from kdpipe.kubeflow.artifacts import ArtifactLike
from kdpipe.kubeflow.params import with_paths
from kdpipe.storage import ENDPOINT_ENV, explain_storage_error

REFERENCE_FILE = "reference.json"
PrepareStep = Callable[..., dict[str, Any]]
DATA_FILES = (TENSORS_FILE, MANIFEST_FILE)  # the manifest last: a reader never sees it without its data


@dataclass(frozen=True)
class DataRef:
    kind: Literal["artifact", "path", "s3", "dvc"]
    location: str = ""
    repo: str = ""
    rev: str = ""

    @property
    def uri(self) -> str:
        if self.kind == "dvc":
            return f"dvc+{self.repo}@{self.rev}#{self.location}"
        return self.location


def parse(uri: str) -> DataRef:
    """Read a ``data_ref`` pipeline parameter; a malformed one is an error naming the forms."""
    uri = uri.strip()
    if not uri:
        return DataRef("artifact")
    if uri.startswith("s3://") and len(uri) > len("s3://") and not uri.endswith("://"):
        return DataRef("s3", uri.rstrip("/"))
    if uri.startswith("pvc:"):
        uri = uri.removeprefix("pvc:")
    if uri.startswith("dvc+"):
        repo_rev, sep, path = uri.removeprefix("dvc+").partition("#")
        repo, at, rev = repo_rev.rpartition("@")
        if sep and at and repo and rev and path:
            return DataRef("dvc", path, repo, rev)
    elif os.path.isabs(uri):
        return DataRef("path", uri)
    raise DataError(
        f"data_ref {uri!r}: expected '' (copy the data), pvc:/absolute/path, s3://bucket/prefix "
        "or dvc+<repo>@<rev>#<path>"
    )


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get(ENDPOINT_ENV) or None)


def _split_s3(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def _storage_error(ref: DataRef, exc: Exception) -> DataError:
    return DataError(f"data_ref {ref.uri}: {explain_storage_error(exc) or exc}")


def writable_dir(ref: DataRef, artifact_path: str, scratch: str) -> str:
    """Where prepare writes the data for this reference (a DVC revision is never written)."""
    if ref.kind == "dvc":
        raise DataError(f"data_ref {ref.uri}: a DVC revision is read, not prepared")
    if ref.kind == "path":
        return ref.location
    if ref.kind == "s3":
        return tempfile.mkdtemp(prefix="kdpipe-prepared-", dir=_ensure(Path(scratch)) if scratch else None)
    return artifact_path


def publish(ref: DataRef, prepared_dir: str) -> None:
    """Upload freshly prepared data to an S3 reference; other kinds are in place already."""
    if ref.kind != "s3":
        return
    bucket, prefix = _split_s3(ref.location)
    client = _s3_client()
    try:
        for name in DATA_FILES:
            client.upload_file(str(Path(prepared_dir) / name), bucket, f"{prefix}/{name}" if prefix else name)
    except Exception as exc:  # botocore raises many types; each is turned into one line
        raise _storage_error(ref, exc) from None


def record(ref: DataRef, manifest: dict[str, Any], dataset: ArtifactLike) -> None:
    """Write the manifest (and the reference, if any) into the Dataset artifact and its metadata."""
    out = Path(dataset.path)
    out.mkdir(parents=True, exist_ok=True)
    if ref.kind != "artifact":
        atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        atomic_write_text(out / REFERENCE_FILE, json.dumps({**asdict(ref), "uri": ref.uri}, indent=2) + "\n")
    dataset.metadata.update({
        "sha256": manifest["sha256"],
        "source": manifest["source"],
        "classes": list(manifest["classes"]),
        "splits": dict(manifest["splits"]),
        "reference": ref.uri,
    })


def _fetch_s3(ref: DataRef, into: Path) -> None:
    bucket, prefix = _split_s3(ref.location)
    client = _s3_client()
    try:
        for name in DATA_FILES:
            client.download_file(bucket, f"{prefix}/{name}" if prefix else name, str(into / name))
    except Exception as exc:  # botocore raises many types; each is turned into one line
        raise _storage_error(ref, exc) from None


def _fetch_dvc(ref: DataRef, into: Path) -> None:
    from dvc.api import DVCFileSystem

    try:
        fs = DVCFileSystem(ref.repo, rev=ref.rev)
        for name in DATA_FILES:
            fs.get_file(f"{ref.location.rstrip('/')}/{name}", str(into / name))
    except Exception as exc:  # dvc and scmrepo raise many types; each is turned into one line
        raise DataError(f"data_ref {ref.uri}: cannot read it with DVC ({type(exc).__name__}: {exc})") from None


def materialize(ref: DataRef, cache_dir: str, expected_sha256: str | None = None) -> Path:
    """A local directory holding the referenced data, checked against ``expected_sha256``.

    Remote data is fetched once into ``cache_dir`` (a PVC shared by the run's steps, or scratch)
    under a name derived from the reference, and reused while its manifest still matches.
    """
    if ref.kind == "artifact":
        raise DataError("materialize needs a reference, not the artifact itself")
    if ref.kind == "path":
        local = Path(ref.location)
    else:
        key = hashlib.sha256(ref.uri.encode()).hexdigest()[:16]
        local = Path(cache_dir or tempfile.gettempdir()) / "kdpipe-data" / key
        current = local / MANIFEST_FILE
        if not (current.exists() and json.loads(current.read_text()).get("sha256") == expected_sha256):
            staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=_ensure(local.parent)))
            try:
                (_fetch_s3 if ref.kind == "s3" else _fetch_dvc)(ref, staging)
                shutil.rmtree(local, ignore_errors=True)
                os.replace(staging, local)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    found = read_manifest(local)["sha256"]
    if expected_sha256 is not None and found != expected_sha256:
        raise DataError(
            f"data_ref {ref.uri}: holds data {found[:12]}, but this run prepared {expected_sha256[:12]}; "
            "the reference changed during the run"
        )
    return local


def read_manifest(prepared_dir: Path) -> dict[str, Any]:
    path = prepared_dir / MANIFEST_FILE
    if not path.exists():
        raise DataError(f"{path}: missing; the reference holds no prepared data set")
    return dict(json.loads(path.read_text()))


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_dir(dataset_path: str, cache_dir: str) -> str:
    """The directory a step reads the prepared data from, given its Dataset artifact."""
    reference = Path(dataset_path) / REFERENCE_FILE
    if not reference.exists():
        return dataset_path
    ref = parse(json.loads(reference.read_text())["uri"])
    return str(materialize(ref, cache_dir, read_manifest(Path(dataset_path))["sha256"]))


def prepare(params: Params, data_ref: str, cache_dir: str, dataset: ArtifactLike, step: PrepareStep) -> dict[str, Any]:
    """The prepare step for a ``data_ref``; returns the data set's manifest.

    Into the Dataset artifact, onto a volume, or staged and uploaded to S3, ``step`` (the prepare
    step) prepares the data; a DVC revision is fetched and ``step`` verifies and records it. Every
    path goes through ``step``, so every path opens its MLflow run.
    """
    ref = parse(data_ref)
    if ref.kind == "dvc":
        manifest = step(with_paths(params, prepared=str(materialize(ref, cache_dir))), prepared_elsewhere=True)
    else:
        prepared = writable_dir(ref, dataset.path, cache_dir)
        manifest = step(with_paths(params, prepared=prepared))
        publish(ref, prepared)
    record(ref, manifest, dataset)
    return manifest
