"""Data references for data sets too large to copy between Kubeflow steps: a path on a volume, an
S3 prefix (a real moto S3 server on 127.0.0.1) and a DVC revision (a real git + DVC repository)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dvc_repo import dvc_repo
from kdpipe import steps
from kdpipe.config import Params
from kdpipe.data import references
from kdpipe.data.prepared import load_prepared
from kdpipe.infra.errors import DataError
from kdpipe.kubeflow import dataref


@dataclass
class Artifact:
    """What kfp hands a component for an artifact: a local path and a metadata dict."""

    path: str
    metadata: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def small(make_params: Callable[..., Params]) -> Params:
    return make_params(data__train_subset=300, data__test_subset=100, data__val_size=50)


def test_parse_names_every_accepted_form() -> None:
    assert references.parse("") == references.DataRef("artifact")
    assert references.parse("pvc:/mnt/data/prepared") == references.DataRef("path", "/mnt/data/prepared")
    assert references.parse("/mnt/data/prepared").kind == "path"
    assert references.parse("s3://bucket/fashion/") == references.DataRef("s3", "s3://bucket/fashion")
    ref = references.parse("dvc+git@github.com:org/repo.git@v1.2#data/prepared")
    assert (ref.repo, ref.rev, ref.location) == ("git@github.com:org/repo.git", "v1.2", "data/prepared")
    assert references.parse(ref.uri) == ref
    for bad in ("data/prepared", "s3://", "dvc+https://example.org/repo.git#data/prepared", "pvc:relative"):
        with pytest.raises(DataError, match="expected '' \\(copy the data\\), pvc:/absolute/path"):
            references.parse(bad)


def test_a_path_reference_is_prepared_in_place_and_checked_by_every_reader(
    small: Params, tmp_path: Path, make_params: Callable[..., Params]
) -> None:
    volume = tmp_path / "volume" / "prepared"
    ref = dataref.parse(f"pvc:{volume}")
    artifact = Artifact(str(tmp_path / "kfp" / "dataset"))
    target = dataref.writable_dir(ref, artifact.path, "")
    manifest = steps.prepare_data(
        small.model_copy(update={"paths": small.paths.model_copy(update={"prepared": target})})
    )
    dataref.record(ref, manifest, artifact)

    assert sorted(p.name for p in Path(artifact.path).iterdir()) == ["manifest.json", "reference.json"]
    assert artifact.metadata["sha256"] == manifest["sha256"] and artifact.metadata["reference"] == str(volume)
    assert dataref.local_dir(artifact.path, "") == str(volume)

    other = make_params(data__train_subset=400, data__test_subset=100, data__val_size=50, paths__prepared=str(volume))
    steps.prepare_data(other)  # someone else's run rewrites the volume mid-run
    with pytest.raises(DataError, match="the reference changed during the run"):
        dataref.local_dir(artifact.path, "")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="datasets")
    try:
        yield endpoint
    finally:
        server.stop()


def test_an_s3_reference_is_uploaded_once_and_fetched_into_the_cache(small: Params, tmp_path: Path, s3: str) -> None:
    import boto3

    ref = dataref.parse("s3://datasets/fashion/v1")
    artifact = Artifact(str(tmp_path / "kfp" / "dataset"))
    manifest = dataref.prepare(small, ref.uri, str(tmp_path / "scratch"), artifact, steps.prepare_data)
    keys = sorted(o["Key"] for o in boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket="datasets")["Contents"])
    assert keys == ["fashion/v1/images.csv", "fashion/v1/manifest.json", "fashion/v1/splits.pt"]

    local = Path(dataref.local_dir(artifact.path, str(tmp_path / "cache")))
    assert local.is_relative_to(tmp_path / "cache")
    assert load_prepared(local).sha256 == manifest["sha256"]
    stored = boto3.client("s3", endpoint_url=s3).get_object(Bucket="datasets", Key="fashion/v1/images.csv")
    assert (local / "images.csv").read_bytes() == stored["Body"].read()
    boto3.client("s3", endpoint_url=s3).delete_object(Bucket="datasets", Key="fashion/v1/splits.pt")
    assert Path(dataref.local_dir(artifact.path, str(tmp_path / "cache"))) == local  # the cache still matches

    missing = Artifact(str(tmp_path / "kfp" / "other"))
    dataref.record(dataref.parse("s3://datasets/nothing"), manifest, missing)
    with pytest.raises(DataError, match="data_ref s3://datasets/nothing"):
        dataref.local_dir(missing.path, str(tmp_path / "cache"))


def test_a_dvc_reference_reads_the_data_set_versioned_at_a_revision(small: Params, tmp_path: Path) -> None:
    import mlflow

    repo = tmp_path / "repo"
    versioned_repo = dvc_repo(repo)
    manifest = steps.prepare_data(small)
    shutil.copytree(small.paths.prepared, repo / "data" / "prepared")
    rev = versioned_repo.version("data/prepared", "prepared data")

    ref = dataref.parse(f"dvc+{repo}@{rev}#data/prepared")
    artifact = Artifact(str(tmp_path / "kfp" / "dataset"))
    assert dataref.prepare(small, ref.uri, str(tmp_path / "cache"), artifact, steps.prepare_data) == manifest
    local = dataref.materialize(ref, str(tmp_path / "cache"), manifest["sha256"])
    client = mlflow.MlflowClient(small.tracking.uri)
    experiment = client.get_experiment_by_name(small.tracking.experiment).experiment_id
    prepared = client.search_runs([experiment], "tags.`kdpipe.step` = 'prepare_data'")
    assert len(prepared) == 2, "the DVC path opens its prepare_data run like the first preparation did"
    assert {r.data.tags["kdpipe.data_sha256"] for r in prepared} == {manifest["sha256"]}
    assert json.loads((Path(artifact.path) / "reference.json").read_text())["rev"] == rev
    assert dataref.local_dir(artifact.path, str(tmp_path / "cache")) == str(local)
    with pytest.raises(DataError, match="a DVC revision is read, not prepared"):
        dataref.writable_dir(ref, artifact.path, "")
