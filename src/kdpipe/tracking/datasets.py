"""The prepared splits as MLflow dataset inputs: what a run read, named by the data's digest.

MLflow's dataset lineage (the run page's "Datasets", the run table's Dataset column) wants a name,
a digest of at most 36 characters, a source and optionally a schema and profile. kdpipe's digest is
the manifest's sha256, cut to those 36 hex characters; the name is ``<source>-<split>``; the source
is the prepared directory; the context tag says what the run used the split for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DIGEST_CHARS = 36  # MLflow's limit for a dataset digest
CONTEXT_TAG = "mlflow.data.context"


def digest(manifest: dict[str, Any]) -> str:
    return str(manifest["sha256"])[:DIGEST_CHARS]


def name(manifest: dict[str, Any], split: str) -> str:
    return f"{manifest['source']}-{split}"


def split_input(manifest: dict[str, Any], split: str, directory: Path, context: str) -> Any:
    """One split of the prepared data as an ``mlflow.entities.DatasetInput``."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    shape = [-1, *(int(s) for s in manifest["shape"])]
    schema = {
        "mlflow_tensorspec": {
            "features": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": shape}}]),
            "targets": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]),
        }
    }
    profile = {
        "num_rows": int(manifest["splits"][split]),
        "num_classes": len(manifest["classes"]),
        "sha256": manifest["sha256"],
    }
    dataset = Dataset(
        name=name(manifest, split),
        digest=digest(manifest),
        source_type="local",
        source=json.dumps({"uri": Path(directory).resolve().as_uri()}),
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset=dataset, tags=[InputTag(key=CONTEXT_TAG, value=context)])


def operational_name(set_name: str) -> str:
    return f"operational-{set_name}"


def operational_input(name: str, figures: dict[str, Any], manifest: dict[str, Any]) -> Any:
    """Operational set ``name`` as measured (``figures``: source, num_samples, sha256), context ``operational``.

    Its digest is the sha256 of the images and labels after they were brought to the training shape.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = str(figures["source"])
    kind = "dvc" if source.startswith("dvc+") else source.split("://", 1)[0] if "://" in source else "local"
    uri = Path(source.removeprefix("pvc:")).resolve().as_uri() if kind == "local" else source
    profile = {
        "num_rows": int(figures["num_samples"]),
        "num_classes": len(manifest["classes"]),
        "sha256": figures["sha256"],
        "kind": figures["kind"],
    }
    dataset = Dataset(
        name=operational_name(name),
        digest=str(figures["sha256"])[:DIGEST_CHARS],
        source_type=kind,
        source=json.dumps({"uri": uri}),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset=dataset, tags=[InputTag(key=CONTEXT_TAG, value="operational")])
