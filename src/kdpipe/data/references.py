"""Where data lives when it is not a local directory: an S3 prefix or a DVC-versioned path.

The forms (one grammar for the pipeline's ``data_ref`` and for ``validate.operational`` sources):

- ``pvc:/mnt/data/prepared`` (or any absolute path): a directory on a mounted volume;
- ``s3://bucket/prefix``: an S3 prefix (endpoint and credentials from the environment);
- ``dvc+<repo>@<rev>#<path>``: a path versioned with DVC at a git revision.

Fetching copies named files, or a whole tree, into a local directory; every failure of the store
becomes one line naming the reference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kdpipe.infra.errors import DataError
from kdpipe.infra.storage import ENDPOINT_ENV, explain_storage_error


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


def parse(uri: str, what: str = "data_ref") -> DataRef:
    """Read a reference; a malformed one is an error naming ``what`` and the forms."""
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
        f"{what} {uri!r}: expected '' (copy the data), pvc:/absolute/path, s3://bucket/prefix "
        "or dvc+<repo>@<rev>#<path>"
    )


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an S3 prefix or a DVC revision rather than a local directory."""
    return uri.strip().startswith(("s3://", "dvc+"))


def s3_client() -> Any:
    """A client from a fresh session: boto3's default session keeps the credentials it first read, and a
    long-lived process (a test run, a notebook) may have changed the environment since."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=os.environ.get(ENDPOINT_ENV) or None)


def split_s3(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def storage_error(ref: DataRef, exc: Exception, what: str = "data_ref") -> DataError:
    return DataError(f"{what} {ref.uri}: {explain_storage_error(exc) or exc}")


def _s3_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return keys


def fetch(ref: DataRef, into: Path, names: tuple[str, ...] | None = None, what: str = "data_ref") -> None:
    """Copy ``names`` (paths under the reference), or everything under it, into ``into``."""
    if ref.kind == "s3":
        bucket, prefix = split_s3(ref.location)
        client = s3_client()
        try:
            keys = (
                [f"{prefix}/{n}" if prefix else n for n in names]
                if names is not None
                else _s3_keys(client, bucket, prefix)
            )
            if not keys:
                raise DataError(f"{what} {ref.uri}: nothing is stored under this prefix")
            for key in keys:
                target = into / key[len(prefix) :].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(target))
        except DataError:
            raise
        except Exception as exc:  # botocore raises many types; each is turned into one line
            raise storage_error(ref, exc, what) from None
    elif ref.kind == "dvc":
        from dvc.api import DVCFileSystem

        try:
            fs, root = DVCFileSystem(ref.repo, rev=ref.rev), ref.location.rstrip("/")
            if names is None:
                fs.get(root, str(into), recursive=True)
            for name in names or ():
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{root}/{name}", str(into / name))
        except Exception as exc:  # dvc and scmrepo raise many types; each is turned into one line
            raise DataError(f"{what} {ref.uri}: cannot read it with DVC ({type(exc).__name__}: {exc})") from None
    else:
        raise DataError(f"{what} {ref.uri or '(empty)'}: only s3:// and dvc+ references are fetched")
