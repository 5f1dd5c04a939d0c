"""The prepare_data step: the data set as fixed splits with a manifest naming it by sha256."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.data.image_record import IMAGES_FILE
from kdpipe.data.prepared import MANIFEST_FILE, load_prepared, write_data, write_store
from kdpipe.data.seeded_split import benchmark_splits
from kdpipe.data.sources import load_source
from kdpipe.data.stable_split import SEEDED_SOURCES, resolve
from kdpipe.data.store import STORE_DIR
from kdpipe.data.user_images import load_user_data
from kdpipe.infra.files import staged
from kdpipe.steps.spec import PREPARE_DATA
from kdpipe.steps.tracked import tracked_run
from kdpipe.steps.workdir import claims
from kdpipe.tracking import run_notes, tags
from kdpipe.tracking.server import check_tracking

log = logging.getLogger("kdpipe")


@claims(PREPARE_DATA)
def prepare_data(params: Params, *, prepared_elsewhere: bool = False) -> dict[str, Any]:
    """Materialise the data set as fixed splits with a manifest naming it by sha256.

    A benchmark set keeps its seeded split (bit for bit); a team's images (class folders or a manifest) are
    split stably, each image listed in ``images.csv`` beside the manifest. ``prepared_elsewhere``: the data
    at ``paths.prepared`` came ready (a DVC revision); it is only verified against its manifest and recorded.
    """
    check_tracking(params)
    d, out, progress_mode = params.data, Path(params.paths.prepared), params.runtime.progress
    if prepared_elsewhere:
        manifest = load_prepared(out, verify=True, progress_mode=progress_mode).manifest
    else:
        stable = resolve(d) == "stable"
        with staged(out) as staging:
            if d.source in SEEDED_SOURCES:
                raw = load_source(d.source, d.root)
                tensors, scheme = benchmark_splits(raw, d, stable, staging / IMAGES_FILE)
                manifest = write_data(
                    staging, tensors, raw.classes, raw.description, d.model_dump(), scheme, progress_mode
                )
            else:
                own = load_user_data(d, staging / IMAGES_FILE, staging / STORE_DIR, progress_mode, previous=out)
                common = (own.classes, own.description, d.model_dump(), own.scheme)
                if own.store is not None:
                    manifest = write_store(staging, own.store, *common, skipped=own.skipped)
                else:
                    manifest = write_data(staging, own.tensors, *common, progress_mode, skipped=own.skipped)
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
