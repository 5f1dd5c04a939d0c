"""The distill step under torchrun: two CPU processes (gloo), each on its own shard of the data,
started by the same launcher as the Kubeflow distill component (kdpipe.kubeflow.launch).

Every process runs with one torch/OpenMP thread. Which files a rank writes and which databases it
opens are observed, not mocked: a ``sitecustomize`` on the workers' PYTHONPATH installs a Python
audit hook that appends each rename (atomic writes end in one) and each SQLite connection to a
per-rank log. The same hook plays the preemption: asked to, it SIGKILLs rank 0 just before it
replaces its checkpoint for the N-th time (torchrun then stops the other rank and fails, as a
Kubeflow pod would), a point that a kill from outside could only race for. Asked to, it also sends SIGTERM to
the launcher there, as Kubernetes stops a pod (the launcher passes it on through torchrun to both ranks).

The tracking test runs the same launcher against the session's real ``mlflow server``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError, Terminated
from kdpipe.infra.files import HISTORY_FILE, load_checkpoint
from kdpipe.infra.termination import stop_on_sigterm
from kdpipe.kubeflow import launch
from kdpipe.kubeflow.params import dump_params
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.steps.pipeline_run import PIPELINE_RUN_ENV
from kdpipe.training.loop import CHECKPOINT_FILE

EPOCHS = 4
AUDIT_HOOK = """
import os, signal, sys
_rank = os.environ.get("RANK")
if _rank is not None:
    _log = os.path.join(os.environ["KDPIPE_AUDIT_DIR"], f"rank{_rank}.log")
    _preempt_at = int(os.environ.get("KDPIPE_PREEMPT_AT_CHECKPOINT", "0"))
    _checkpoints = []
    def _hook(event, args):
        if event == "os.rename" or event == "sqlite3.connect":
            target = str(args[1] if event == "os.rename" else args[0])
            with open(_log, "a") as fh:
                fh.write(f"{event} {target}\\n")
            if event == "os.rename" and target.endswith("/student/last.pt"):
                _checkpoints.append(target)
                if len(_checkpoints) == _preempt_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                if len(_checkpoints) == int(os.environ.get("KDPIPE_SIGTERM_AT_CHECKPOINT", "0")) and _rank == "0":
                    os.kill(int(os.environ["KDPIPE_SIGTERM_PID"]), signal.SIGTERM)
    sys.addaudithook(_hook)
"""


def _ranks_watched(monkeypatch: pytest.MonkeyPatch, audit_dir: Path, preempt_at: int = 0) -> Path:
    """Environment for the next torchrun: one thread per rank, the audit hook, an optional preemption."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    (audit_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    for key, value in {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(audit_dir),
        "KDPIPE_AUDIT_DIR": str(audit_dir),
        "KDPIPE_PREEMPT_AT_CHECKPOINT": str(preempt_at),
    }.items():
        monkeypatch.setenv(key, value)
    return audit_dir


def _audit(audit_dir: Path, rank: int) -> list[str]:
    log = audit_dir / f"rank{rank}.log"
    return log.read_text().splitlines() if log.exists() else []


def _distill_runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'kdpipe.step' AND t.value = 'distill'"
        ).fetchall()


def _variant(make_params: Callable[..., Params], tmp_path: Path, name: str) -> Params:
    """Same data and teacher, own student, checkpoints and MLflow store."""
    (tmp_path / name).mkdir()
    return make_params(
        train__epochs=EPOCHS,
        train__batch_size=64,
        runtime__num_threads=1,
        runtime__progress="log",
        paths__student=str(tmp_path / name / "student"),
        paths__checkpoints=str(tmp_path / name / "checkpoints"),
        tracking__uri=f"sqlite:///{tmp_path / name / 'mlruns.db'}",
    )


def test_distill_under_torchrun_trains_on_two_ranks_writes_on_rank0_only_and_resumes_exactly(
    make_params: Callable[..., Params],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    base = _variant(make_params, tmp_path, "setup")
    steps.prepare_data(base)
    steps.evaluate_teacher(base)

    # An uninterrupted two-rank run, launched the way the distill component launches it.
    full = _variant(make_params, tmp_path, "full")
    audit = _ranks_watched(monkeypatch, tmp_path / "full" / "audit")
    summary = launch.distill(full, 2, steps.distill, resume=False)
    log = capfd.readouterr()

    history = (Path(full.paths.student) / HISTORY_FILE).read_text().splitlines()
    assert len(history) == 1 + EPOCHS
    assert summary["epochs"] == EPOCHS and summary["final_val_acc"] > 0.2, (summary, log)
    losses = [float(row.split(",")[history[0].split(",").index("loss")]) for row in history[1:]]
    assert losses[-1] < losses[0]

    rank0, rank1 = _audit(audit, 0), _audit(audit, 1)
    assert f"os.rename {Path(full.paths.checkpoints) / 'student' / CHECKPOINT_FILE}" in rank0
    assert f"os.rename {Path(full.paths.student) / 'model.pt'}" in rank0
    assert any(line.startswith("sqlite3.connect") for line in rank0)
    # Rank 1 writes nothing but its own shard of the teacher cache (cache.mode: auto records it): its epochs' parts
    # and indexes (``epoch0002-rank1-part00000.pt``, ``epoch0002-rank1.json``) and the key beside them.
    cache = str(Path(full.paths.teacher_cache))
    written = [line for line in rank1 if str(tmp_path) in line]
    own = re.compile(r"epoch\d{4}-rank1[-.]|key\.json$")
    assert written and all(cache in line and own.search(line) for line in written), rank1
    assert not [line for line in rank1 if line.startswith("sqlite3.connect")], rank1
    runs = _distill_runs(tmp_path / "full" / "mlruns.db")
    assert [status for _, status in runs] == ["FINISHED"]

    # The same run preempted while writing its second checkpoint, then resumed by a second torchrun.
    cut = _variant(make_params, tmp_path, "cut")
    _ranks_watched(monkeypatch, tmp_path / "cut" / "audit1", preempt_at=2)
    with pytest.raises(KdpipeError, match="torchrun with 2 processes exited"):
        launch.distill(cut, 2, steps.distill)
    assert load_checkpoint(Path(cut.paths.checkpoints) / "student" / CHECKPOINT_FILE)["epoch"] == 0  # epoch 1 kept
    assert not (Path(cut.paths.student) / "model.pt").exists()

    resumed_audit = _ranks_watched(monkeypatch, tmp_path / "cut" / "audit2")
    capfd.readouterr()
    launch.distill(cut, 2, steps.distill)
    assert "resuming from" in capfd.readouterr().err
    a = torch.load(Path(full.paths.student) / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(Path(cut.paths.student) / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not [line for line in _audit(resumed_audit, 1) if str(tmp_path) in line]

    # Kubernetes stops the pod instead: SIGTERM reaches the launcher (this process, inside stop_on_sigterm as the
    # distill component runs it) at rank 0's second checkpoint; it passes it to torchrun and so to both ranks.
    term = _variant(make_params, tmp_path, "term")
    _ranks_watched(monkeypatch, tmp_path / "term" / "audit1")
    monkeypatch.setenv("KDPIPE_SIGTERM_AT_CHECKPOINT", "2")
    monkeypatch.setenv("KDPIPE_SIGTERM_PID", str(os.getpid()))
    with pytest.raises(Terminated), stop_on_sigterm(120):
        launch.distill(term, 2, steps.distill)
    assert [status for _, status in _distill_runs(tmp_path / "term" / "mlruns.db")] == ["KILLED"]
    assert not (Path(term.paths.student) / "model.pt").exists()
    monkeypatch.delenv("KDPIPE_SIGTERM_AT_CHECKPOINT")
    launch.distill(term, 2, steps.distill)
    c = torch.load(Path(term.paths.student) / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_two_gloo_ranks_log_exactly_one_distill_run_from_rank_zero(
    make_params: Callable[..., Params], tmp_path: Path, mlflow_server: str
) -> None:
    """Real: ``kdpipe distill`` started by the users' launcher (torchrun --standalone, two CPU
    processes in one gloo process group training through DDP) and a real ``mlflow server`` (SQLite
    backend, artifacts on SeaweedFS), queried afterwards through MLflow's client; nothing is mocked."""
    import mlflow

    tiny = {
        "data__train_subset": 600,
        "data__val_size": 100,
        "data__test_subset": 100,
        "runtime__num_threads": 1,
        "teacher__train__batch_size": 64,
    }
    steps.prepare_data(make_params(**tiny, tracking__enabled=False))
    steps.evaluate_teacher(make_params(**tiny, tracking__enabled=False))
    experiment = f"ddp-{uuid.uuid4().hex[:8]}"
    params = make_params(
        **tiny, train__epochs=2, train__batch_size=64, tracking__uri=mlflow_server, tracking__experiment=experiment
    )
    params_file = tmp_path / "ddp-params.yaml"
    params_file.write_text(dump_params(params))
    run_id = uuid.uuid4().hex[:12]

    done = subprocess.run(
        launch.torchrun_command(str(params_file), 2),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", PIPELINE_RUN_ENV: run_id},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id], f"tags.`kdpipe.pipeline_run_id` = '{run_id}'")
    assert run.data.tags["kdpipe.step"] == "distill" and run.info.status == "FINISHED"
    assert run.data.tags["kdpipe.world_size"] == "2"
    for metric in ("loss", "loss_ce", "loss_kl", "loss_feat", "train_acc", "val_acc", "lr"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2], metric
    student, meta = load_model(Path(params.paths.student) / MODEL_FILE)
    assert meta["arch"] == params.student.arch and sum(p.numel() for p in student.parameters()) > 0
