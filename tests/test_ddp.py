"""The distill step under torchrun: two CPU processes (gloo), each on its own shard of the data,
started by the same launcher as the Kubeflow distill component (kdpipe.kubeflow.launch).

Every process runs with one torch/OpenMP thread. Which files a rank writes and which databases it
opens are observed, not mocked: a ``sitecustomize`` on the workers' PYTHONPATH installs a Python
audit hook that appends each rename (atomic writes end in one) and each SQLite connection to a
per-rank log. The same hook plays the preemption: asked to, it SIGKILLs rank 0 just before it
replaces its checkpoint for the N-th time (torchrun then stops the other rank and fails, as a
Kubeflow pod would), a point that a kill from outside could only race for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdpipe import steps
from kdpipe.checkpoint import load_checkpoint
from kdpipe.config import Params
from kdpipe.engine import CHECKPOINT_FILE
from kdpipe.errors import KdpipeError
from kdpipe.kubeflow import launch

EPOCHS = 4
AUDIT_HOOK = '''
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
    sys.addaudithook(_hook)
'''


def _ranks_watched(monkeypatch: pytest.MonkeyPatch, audit_dir: Path, preempt_at: int = 0) -> Path:
    """Environment for the next torchrun: one thread per rank, the audit hook, an optional preemption."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    (audit_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    for key, value in {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(audit_dir), "KDPIPE_AUDIT_DIR": str(audit_dir),
                       "KDPIPE_PREEMPT_AT_CHECKPOINT": str(preempt_at)}.items():
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
        train__epochs=EPOCHS, train__batch_size=64, runtime__num_threads=1, runtime__progress="log",
        paths__student=str(tmp_path / name / "student"), paths__checkpoints=str(tmp_path / name / "checkpoints"),
        tracking__uri=f"sqlite:///{tmp_path / name / 'mlruns.db'}",
    )


def test_distill_under_torchrun_trains_on_two_ranks_writes_on_rank0_only_and_resumes_exactly(
    make_params: Callable[..., Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    base = _variant(make_params, tmp_path, "setup")
    steps.prepare_data(base)
    steps.evaluate_teacher(base)

    # An uninterrupted two-rank run, launched the way the distill component launches it.
    full = _variant(make_params, tmp_path, "full")
    audit = _ranks_watched(monkeypatch, tmp_path / "full" / "audit")
    summary = launch.distill(full, num_processes=2, resume=False)
    log = capfd.readouterr()

    history = (Path(full.paths.student) / steps.HISTORY_FILE).read_text().splitlines()
    assert len(history) == 1 + EPOCHS
    assert summary["epochs"] == EPOCHS and summary["final_val_acc"] > 0.2, (summary, log)
    losses = [float(row.split(",")[history[0].split(",").index("loss")]) for row in history[1:]]
    assert losses[-1] < losses[0]

    rank0, rank1 = _audit(audit, 0), _audit(audit, 1)
    assert f"os.rename {Path(full.paths.checkpoints) / 'student' / CHECKPOINT_FILE}" in rank0
    assert f"os.rename {Path(full.paths.student) / 'model.pt'}" in rank0
    assert any(line.startswith("sqlite3.connect") for line in rank0)
    assert not [line for line in rank1 if str(tmp_path) in line], rank1
    assert not [line for line in rank1 if line.startswith("sqlite3.connect")], rank1
    runs = _distill_runs(tmp_path / "full" / "mlruns.db")
    assert [status for _, status in runs] == ["FINISHED"]

    # The same run preempted while writing its second checkpoint, then resumed by a second torchrun.
    cut = _variant(make_params, tmp_path, "cut")
    _ranks_watched(monkeypatch, tmp_path / "cut" / "audit1", preempt_at=2)
    with pytest.raises(KdpipeError, match="torchrun with 2 processes exited"):
        launch.distill(cut, num_processes=2)
    assert load_checkpoint(Path(cut.paths.checkpoints) / "student" / CHECKPOINT_FILE)["epoch"] == 0  # epoch 1 kept
    assert not (Path(cut.paths.student) / "model.pt").exists()

    resumed_audit = _ranks_watched(monkeypatch, tmp_path / "cut" / "audit2")
    capfd.readouterr()
    launch.distill(cut, num_processes=2)
    assert "resuming from" in capfd.readouterr().err
    a = torch.load(Path(full.paths.student) / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(Path(cut.paths.student) / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not [line for line in _audit(resumed_audit, 1) if str(tmp_path) in line]
