"""The distill step across several nodes, from the pipeline's launcher task: stage, run the job, collect.

The launcher stages the teacher on the shared PVC under the run's directory (the data set by reference, copied
there at most once per content, never per run), runs the job
(a Trainer v2 TrainJob, or a PyTorchJob with ``training_api: pytorchjob``) through the attempts of
:mod:`kdpipe.kubeflow.cluster_job`, and copies the student back into its Model artifact. The launcher itself
requests no GPU: the pods of the job do.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from kdpipe.config import Params
from kdpipe.data.prepared import MANIFEST_FILE
from kdpipe.infra.files import METRICS_FILE, PARAMS_FILE, atomic_write_text, read_json
from kdpipe.kubeflow import cluster, pytorchjob, trainjob
from kdpipe.kubeflow.cluster_job import ATTEMPT_LABEL, JobOutcome, Jobs, run_job
from kdpipe.kubeflow.launch import scratch_dir
from kdpipe.kubeflow.params import dump_params, with_paths

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ATTEMPT_FILE = "job_attempt.txt"  # on the PVC beside the staged run: the last attempt created
TrainingApi = Literal["trainjob", "pytorchjob"]
TRAINING_APIS: tuple[str, ...] = get_args(TrainingApi)  # the CLI's choices
POLL_S = 30.0


@dataclass(frozen=True)
class Placement:
    """Where the job's pods run: ``nodes`` pods of ``gpus_per_node`` GPUs (``accelerator_type``), sharing the
    PVC ``pvc_name``, with the credentials of ``secret_name``; ``task_config``: the launcher's passed-through
    ``dsl.TaskConfig`` (TrainJob only), which takes the place of those defaults."""

    nodes: int
    gpus_per_node: int
    training_api: TrainingApi = "trainjob"
    accelerator_type: str = cluster.GPU_RESOURCE
    pvc_name: str = cluster.CACHE_VOLUME
    secret_name: str = cluster.CREDENTIALS_SECRET
    task_config: dict[str, Any] = field(default_factory=dict)


def stage(params: Params, work_dir: Path, shared: Path) -> Params:
    """Put the teacher and params under ``work_dir`` (the run's directory on the shared PVC ``shared``) and point
    params at the data set there by reference: where it already lies on the PVC, in place; else copied once under
    ``shared/prepared/<sha256>`` and read from there by every later run while its manifest names the same data."""
    paths = {name: str(work_dir / name) for name in ("teacher", "student", "checkpoints")}
    shutil.copytree(params.paths.teacher, paths["teacher"], dirs_exist_ok=True)
    prepared = Path(params.paths.prepared)
    if not prepared.resolve().is_relative_to(shared.resolve()):
        sha256 = read_json(prepared / MANIFEST_FILE)["sha256"]
        target = shared / "prepared" / sha256[:16]
        if not ((target / MANIFEST_FILE).exists() and read_json(target / MANIFEST_FILE)["sha256"] == sha256):
            staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")  # pods may share a pid
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(prepared, staging)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        prepared = target
    staged = with_paths(params, prepared=str(prepared), **paths)
    atomic_write_text(work_dir / PARAMS_FILE, dump_params(staged))
    return staged


def run(
    params: Params, work_dir: Path, run_id: str, where: Placement, api: Any, namespace: str, poll_s: float = POLL_S
) -> JobOutcome:
    """The job of ``run_id``, collected, waited on or created (:func:`kdpipe.kubeflow.cluster_job.run_job`); the
    number of each attempt created is recorded in ``work_dir`` so that the next one, after a deletion, is new."""
    cfg, recorded = params.kubeflow, work_dir / ATTEMPT_FILE
    last = int(recorded.read_text()) if recorded.exists() else 0
    placed: dict[str, Any] = {
        "nodes": where.nodes,
        "gpus_per_node": where.gpus_per_node,
        "deadline_s": cfg.job_deadline_s,
    }
    placed |= {"accelerator_type": where.accelerator_type, "pvc_name": where.pvc_name, "secret_name": where.secret_name}
    if where.training_api == "trainjob":
        kind, make = trainjob.TRAINJOB, trainjob.manifest
        placed |= {"runtime": cfg.trainer_runtime, "task_config": where.task_config}
        placed["grace_s"] = int(params.runtime.termination_grace_s) + 10
    else:
        kind, make = pytorchjob.PYTORCHJOB, pytorchjob.manifest

    def build(name: str, labels: dict[str, str]) -> dict[str, Any]:
        atomic_write_text(recorded, labels[ATTEMPT_LABEL])
        return make(name, labels, work_dir, **placed)

    jobs = Jobs(api, kind, namespace)
    deadline = cfg.job_deadline_s + 300  # the controller ends the job first; this is the launcher's backstop
    return run_job(
        jobs,
        run_id,
        build,
        prefix="kdpipe-distill",
        keep=cfg.keep_jobs,
        deadline_s=deadline,
        poll_s=poll_s,
        last_attempt=last,
    )


def distill(params: Params, cache_dir: str, run_id: str, student_dir: str, placed: tuple[Any, ...]) -> dict[str, Any]:
    """Stage the inputs on the shared PVC (under ``cache_dir``, keyed by ``run_id``), run the job in this pod's
    namespace to completion, and copy the student into ``student_dir``; returns the distill step's summary.
    ``placed``: the launcher component's :class:`Placement` fields, in order."""
    from kubernetes import client, config

    *fields, task_config = placed  # a dsl.TaskConfig (a dataclass), empty where KFP passed nothing through
    where = Placement(*fields, task_config=dataclasses.asdict(task_config) if task_config else {})
    config.load_incluster_config()
    work_dir = Path(scratch_dir(cache_dir, "runs", run_id))
    staged = stage(params, work_dir, Path(cache_dir) if cache_dir else work_dir)
    outcome = run(staged, work_dir, run_id, where, client.CustomObjectsApi(), NAMESPACE_FILE.read_text().strip())
    shutil.copytree(staged.paths.student, student_dir, dirs_exist_ok=True)
    return {**read_json(Path(student_dir) / METRICS_FILE), "job_attempt": outcome.attempt}
