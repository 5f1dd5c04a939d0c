"""Faults a nightly operator meets, injected through the real CLI: each ends in one line, nothing stored is lost.

Every case runs `kdpipe` as its own process, as a scheduler would: an MLflow server killed in the
middle of training, a teacher file other than the stored one, a full or read-only disk (real tmpfs
mounts: root only, as CI runs), a pickle that would run code, and two pipelines in one directory.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from kdpipe import steps
from kdpipe.config import Params
from kdpipe.infra.errors import WriteError
from kdpipe.infra.files import HISTORY_FILE, atomic_write_bytes, file_sha256, load_checkpoint
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, save_model
from kdpipe.steps.pipeline_run import PIPELINE_RUN_ENV
from kdpipe.steps.workdir import lock_path
from kdpipe.tracking import tags
from kdpipe.training.loop import CHECKPOINT_FILE, STUDENT_CHECKPOINTS
from servers import S3Store, start_mlflow

KDPIPE = str(Path(sys.executable).with_name("kdpipe"))
HANG_GUARD_S = 600  # MLflow's own retries would stall a step ~12 minutes; kdpipe's budget here is seconds


def _env() -> dict[str, str]:
    """The test's environment without a pipeline run id, so that kdpipe resolves its own."""
    return {k: v for k, v in os.environ.items() if k != PIPELINE_RUN_ENV}


def _kdpipe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KDPIPE, *args], capture_output=True, text=True, timeout=HANG_GUARD_S, env=env or _env())


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed: exactly one `kdpipe: error:` line and no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kdpipe: error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr[-3000:]
    return errors[0]


def _write_params(params: Params, path: Path) -> Path:
    path.write_text(yaml.safe_dump(params.to_dict()))
    return path


@contextmanager
def _tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; CI runs as root")
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


# 1. An MLflow outage in the middle of training


def test_mlflow_killed_in_epoch_one_neither_stalls_training_nor_splits_the_pipeline_run(
    make_params: Callable[..., Params], tmp_path: Path, seaweedfs: S3Store
) -> None:
    """Training carries on without MLflow and writes every checkpoint; the step then gives up after
    tracking.retry_seconds with one line. Once the server is back, `--resume` finishes the job under
    the same pipeline run id: the abandoned run ends FAILED, none stays RUNNING, and the finished run's
    metrics equal history.csv once each."""
    import mlflow

    work = tmp_path / "mlflow"
    work.mkdir()
    prefix = f"outage-{uuid.uuid4().hex[:8]}"
    server, uri = start_mlflow(work, seaweedfs, prefix)
    port = int(uri.rsplit(":", 1)[1])
    params = make_params(
        **{
            "data.train_subset": 6000,
            "train.epochs": 2,
            "train.batch_size": 64,
            "runtime.progress": "log",
            "tracking.uri": uri,
            "tracking.retry_seconds": 5,
        }
    )
    params_file = _write_params(params, tmp_path / "params.yaml")
    env = {**_env(), **seaweedfs.env()}
    try:
        steps.prepare_data(params)
        steps.evaluate_teacher(params)
        proc = subprocess.Popen([KDPIPE, "distill", "-c", str(params_file)], stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:
            lines.append(line)
            if "distill: MLflow run" in line:
                server.stop()  # the server dies as epoch 1 begins
                break
        stopped = time.monotonic()
        lines += proc.stderr.readlines()
        proc.wait(timeout=HANG_GUARD_S)
        finished_training = time.monotonic()
        err = "".join(lines)
        print(
            f"outage: the step ended {finished_training - stopped:.1f} s after the server was killed (retry budget 5 s)"
        )
        failed = _one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, "", err))
        print(failed)
        assert "distill[srd] epoch 2/2" in err, "training went on to its last epoch without MLflow"
        # MLflow's own system-metrics thread polls runs/get (and retries) in the background; kdpipe itself
        # makes no request while /health fails, so none of its calls (log-batch, tags, artifacts) is retried.
        retried = [line for line in err.splitlines() if "Retrying (Retry(" in line and "/mlflow/runs/get?" not in line]
        assert retried == [], "no request of kdpipe's was made (and retried) while the server was down"
        assert "tracking.retry_seconds=5" in failed and "`kdpipe distill --resume`" in failed
        pipeline_run_id = failed.split("pipeline run id ")[1].split()[0]

        checkpoint = load_checkpoint(Path(params.paths.checkpoints) / STUDENT_CHECKPOINTS / CHECKPOINT_FILE)
        assert checkpoint["epoch"] == 1 and len(checkpoint["history"]) == 2
        assert checkpoint["meta"]["pipeline_run_id"] == pipeline_run_id
        assert (Path(params.paths.student) / MODEL_FILE).is_file()

        server, _ = start_mlflow(work, seaweedfs, prefix, port=port)
        resumed = _kdpipe("distill", "--resume", "-c", str(params_file), env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resuming from" in resumed.stderr

        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(params.tracking.experiment)
        runs = client.search_runs(
            [experiment.experiment_id],
            f"tags.`{tags.PIPELINE_RUN_ID}` = '{pipeline_run_id}' and tags.`{tags.STEP}` = 'distill'",
        )
        by_status = {r.info.status: r for r in runs}
        assert sorted(by_status) == ["FAILED", "FINISHED"] and len(runs) == 2
        assert by_status["FAILED"].data.tags[tags.ERROR].startswith("abandoned: MLflow became unreachable")
        everywhere = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
        assert everywhere == [], "no run is left RUNNING"

        with open(Path(params.paths.student) / HISTORY_FILE) as fh:
            history = list(csv.DictReader(fh))
        finished = by_status["FINISHED"].info.run_id
        for key in ("loss", "train_acc", "val_acc", "projector_effective_rank"):
            logged = client.get_metric_history(finished, key)
            assert [m.step for m in logged] == [1, 2], key  # each epoch once: no duplicates
            want = [float(row[key]) for row in history]
            assert [m.value for m in logged] == pytest.approx(want, rel=1e-6), key
    finally:
        server.stop()


# 2. One teacher truth


def test_distill_refuses_a_teacher_source_other_than_the_stored_teacher(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    """`distill -p teacher.source=<file>` never distils from another stored teacher while logging that
    file: it refuses before training; after `kdpipe teacher` with the same source it uses it, and the
    run records that file's fingerprint."""
    import mlflow

    params = make_params()
    steps.prepare_data(params)
    steps.evaluate_teacher(params)  # the demo teacher, trained: source 'train'
    other = tmp_path / "other-teacher.pt"
    torch.manual_seed(7)
    save_model(
        other,
        create_model("cnn16", 10, 1),
        "cnn16",
        list(json.loads((Path(params.paths.prepared) / "manifest.json").read_text())["classes"]),
        1,
    )
    params_file = _write_params(params, tmp_path / "params.yaml")

    refused = _kdpipe("distill", "-c", str(params_file), "-p", f"teacher.source={other}")
    line = _one_line_error(refused)
    assert f"teacher.source is '{other}'" in line and "resolved from 'train'" in line and "kdpipe teacher" in line
    assert not (Path(params.paths.checkpoints) / STUDENT_CHECKPOINTS).exists(), "refused before training"

    for command in ("teacher", "distill"):
        done = _kdpipe(command, "-c", str(params_file), "-p", f"teacher.source={other}")
        assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`{tags.STEP}` = 'distill'")
    assert run.data.tags[tags.TEACHER_VERSION] == f"sha256:{file_sha256(other)[:16]}"
    assert run.data.params["teacher.source"] == str(other)


def test_a_later_step_refuses_data_params_other_than_those_the_data_was_prepared_with(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    """The logged data.* params of a distill run always describe the data it trained on."""
    params = make_params(**{"tracking.enabled": False})
    steps.prepare_data(params)
    params_file = _write_params(params, tmp_path / "params.yaml")
    line = _one_line_error(_kdpipe("distill", "-c", str(params_file), "-p", "data.val_size=100"))
    assert line == (
        f"kdpipe: error: data.val_size is 100, but {params.paths.prepared} was prepared with 500; run "
        "`kdpipe prepare` with these params first, so the step uses the data its params name"
    )


# 3. A full or read-only disk


def test_a_tmpfs_too_small_for_the_checkpoint_is_refused_before_the_first_epoch(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    params = make_params(**{"tracking.enabled": False, "student.arch": "cnn16", "runtime.progress": "log"})
    steps.prepare_data(params)
    steps.evaluate_teacher(params)
    params_file = _write_params(params, tmp_path / "params.yaml")
    with _tmpfs(Path(params.paths.checkpoints), "256k"):  # the cnn16 checkpoint alone is over 600 kB
        refused = _kdpipe("distill", "-c", str(params_file))
    line = _one_line_error(refused)
    assert f"kdpipe: error: {Path(params.paths.checkpoints) / STUDENT_CHECKPOINTS}: " in line
    assert "MB free, but the student's checkpoint and model need about" in line
    assert "epoch 1/" not in refused.stderr


@pytest.mark.parametrize("command, key", [("distill", "student"), ("validate", "validation")])
def test_a_read_only_output_directory_is_refused_before_any_work(
    make_params: Callable[..., Params], tmp_path: Path, command: str, key: str
) -> None:
    params = make_params(**{"tracking.enabled": False, "runtime.progress": "log"})
    steps.prepare_data(params)
    steps.evaluate_teacher(params)
    if command == "validate":
        steps.distill(params)
    params_file = _write_params(params, tmp_path / "params.yaml")
    out = Path(getattr(params.paths, key))
    with _tmpfs(out, "1m", read_only=True):
        refused = _kdpipe(command, "-c", str(params_file))
    assert _one_line_error(refused) == (
        f"kdpipe: error: {out}: cannot write (read-only file system); checked before any work, nothing was changed"
    )
    assert "epoch 1/" not in refused.stderr


def test_a_full_disk_during_a_write_names_the_file_and_keeps_the_previous_one(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "64k") as small:
        target = small / "metrics.json"
        atomic_write_bytes(target, b"previous")
        with pytest.raises(WriteError) as info:
            atomic_write_bytes(target, b"x" * 256 * 1024)
        assert str(info.value) == f"{target}: cannot write (no space left on the device); the previous file is intact"
        assert target.read_bytes() == b"previous"
        assert [p.name for p in small.iterdir()] == ["metrics.json"], "no temporary file is left behind"


# 4. Files that are not kdpipe's


class _RunsCode:
    """Unpickling this runs a shell command: the marker file proves whether it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("planted", ["checkpoint", "stored teacher", "teacher.source"])
def test_a_pickle_that_would_run_code_is_refused_naming_the_file(
    make_params: Callable[..., Params], tmp_path: Path, planted: str
) -> None:
    params = make_params(**{"tracking.enabled": False})
    steps.prepare_data(params)
    steps.evaluate_teacher(params)
    marker = tmp_path / "code-ran"
    if planted == "checkpoint":
        target = Path(params.paths.checkpoints) / STUDENT_CHECKPOINTS / CHECKPOINT_FILE
        args = ["distill", "--resume"]
    elif planted == "stored teacher":
        target = Path(params.paths.teacher) / MODEL_FILE
        args = ["distill"]
    else:
        target = tmp_path / "their-teacher.pt"
        args = ["teacher", "-p", f"teacher.source={target}"]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "payload": _RunsCode(marker)}, target)
    params_file = _write_params(params, tmp_path / "params.yaml")

    line = _one_line_error(_kdpipe(*args, "-c", str(params_file)))
    if planted != "stored teacher":
        assert line == (
            f"kdpipe: error: {target}: not a kdpipe file, or it holds code; kdpipe loads only tensors and "
            "plain values and will not load it"
        )
    else:  # the stored teacher's sha256 no longer matches, so the file is never unpickled at all
        assert line == (
            f"kdpipe: error: {target}: missing or changed since `kdpipe teacher` stored it; run `kdpipe teacher`"
        )
    assert "weights_only" not in line
    assert not marker.exists(), "no code from the file ran"


def test_an_empty_model_file_says_it_is_empty(make_params: Callable[..., Params], tmp_path: Path) -> None:
    params = make_params(**{"tracking.enabled": False})
    steps.prepare_data(params)
    empty = tmp_path / "empty.pt"
    empty.touch()
    params_file = _write_params(params, tmp_path / "params.yaml")
    line = _one_line_error(_kdpipe("teacher", "-c", str(params_file), "-p", f"teacher.source={empty}"))
    assert line == f"kdpipe: error: teacher.source {empty}: the file is empty"


# 5. One pipeline per directory


def _wait_for_lock(directory: Path, pid: int, proc: subprocess.Popen[str]) -> None:
    path = lock_path(directory)
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(path.read_text())["pid"] == pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} never took {path}")


def test_a_second_pipeline_in_the_same_directory_is_refused_and_a_killed_one_leaves_no_lock(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    params = make_params(**{"tracking.enabled": False, "train.epochs": 2})
    params_file = _write_params(params, tmp_path / "params.yaml")
    argv = [KDPIPE, "run", "-c", str(params_file)]

    first = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=_env())
    _wait_for_lock(Path(params.paths.student), first.pid, first)
    os.kill(first.pid, signal.SIGSTOP)  # alive and holding the lock however fast it would have finished
    try:
        second = _kdpipe("run", "-c", str(params_file))
        prepare = _kdpipe("prepare", "-c", str(params_file))
        assert first.poll() is None, "the second pipeline was refused while the first was still running"
    finally:
        os.kill(first.pid, signal.SIGCONT)
    for refused in (second, prepare):
        line = _one_line_error(refused)
        assert f"in use by pid {first.pid} on " in line and "(run_pipeline, pipeline run " in line
    _, err = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 0, err[-3000:]
    decision = json.loads((Path(params.paths.validation) / "decision.json").read_text())
    assert decision["model_sha256"] == file_sha256(Path(params.paths.student) / MODEL_FILE), "the first run is whole"

    killed = subprocess.Popen(argv, stderr=subprocess.DEVNULL, env=_env())
    _wait_for_lock(Path(params.paths.student), killed.pid, killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    again = _kdpipe("run", "-c", str(params_file))
    assert again.returncode == 0, again.stderr[-3000:]
