"""The prepare_data step: the data set as fixed splits with a manifest naming it by sha256."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.data.prepared import MANIFEST_FILE, build_splits, load_prepared, write_prepared
from kdpipe.data.sources import load_source
from kdpipe.steps.spec import PREPARE_DATA
from kdpipe.steps.tracked import tracked_run
from kdpipe.steps.workdir import claims
from kdpipe.tracking import run_notes, tags
from kdpipe.tracking.server import check_tracking

log = logging.getLogger("kdpipe")


@claims(PREPARE_DATA)
def prepare_data(params: Params, *, prepared_elsewhere: bool = False) -> dict[str, Any]:
    """Materialise the data set as fixed splits with a manifest naming it by sha256.

    ``prepared_elsewhere``: the data at ``paths.prepared`` came ready (a DVC revision); it is only
    verified against its manifest and recorded.
    """
    check_tracking(params)
    d, out = params.data, Path(params.paths.prepared)
    if prepared_elsewhere:
        manifest = load_prepared(out, verify=True).manifest
    else:
        raw = load_source(d.source, d.root, d.image_size)
        tensors = build_splits(raw, d.val_size, d.seed, d.train_subset, d.test_subset)
        manifest = write_prepared(out, tensors, raw, d.model_dump())
    with tracked_run(params, PREPARE_DATA, {tags.DATA_SHA256: manifest["sha256"]}) as run:
        run.log_metrics({f"{k}_size": v for k, v in manifest["splits"].items()})
        run.log_artifact(out / MANIFEST_FILE)
        run.describe(run_notes.prepare(manifest))
    log.info(
        "prepare_data: %s -> %s (sha256 %s, splits %s)",
        manifest["source"],
        out,
        manifest["sha256"][:12],
        manifest["splits"],
    )
    return manifest
