"""The training engine on real Fashion-MNIST: frozen teacher, short last batch, exact resume, NaN guard.

Each test trains a tiny student (cnn8) for one or two epochs on 800 real images, through
:func:`kdpipe.training.loop.train` or the real :func:`kdpipe.steps.distill` step.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from kdpipe import steps
from kdpipe.config import Params, params_from_dict
from kdpipe.data.prepared import PreparedData, load_prepared
from kdpipe.distill import create_distiller
from kdpipe.infra.errors import NonFiniteLossError, TeacherMismatchError
from kdpipe.infra.files import file_sha256, load_checkpoint
from kdpipe.models import create_model
from kdpipe.models.file import load_model, save_model
from kdpipe.tracking import tags
from kdpipe.training.loop import CHECKPOINT_FILE, train
from kdpipe.training.runtime import make_loader, make_runtime

SMALL_DATA = {"data__train_subset": 1000, "data__val_size": 200, "data__test_subset": 500}
BATCH = 100


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory, raw_root: Path) -> Path:
    """800 train / 200 val / 500 test real images, prepared once for the module."""
    out = tmp_path_factory.mktemp("prepared") / "prepared"
    raw = {
        "data": {"root": str(raw_root), "train_subset": 1000, "val_size": 200, "test_subset": 500},
        "tracking": {"enabled": False},
        "paths": {"prepared": str(out)},
    }
    steps.prepare_data(params_from_dict(raw))
    return out


@pytest.fixture
def small(make_params: Callable[..., Params], prepared_dir: Path, tmp_path: Path) -> Callable[..., Params]:
    """make_params on the module's prepared data, without MLflow unless a test turns it on, distilling from the
    teacher file that :func:`_install_teacher` writes."""

    def factory(**overrides: object) -> Params:
        overrides = {"teacher__source": str(tmp_path / "installed-teacher.pt"), "tracking__enabled": False, **overrides}
        return make_params(**SMALL_DATA, paths__prepared=str(prepared_dir), train__batch_size=BATCH, **overrides)

    return factory


def _install_teacher(params: Params, data: PreparedData, num_classes: int | None = None, in_channels: int = 1) -> Path:
    """A randomly initialised cnn16 saved as ``teacher.source``, and stored as the teacher step stores one."""
    torch.manual_seed(123)
    k = num_classes or data.num_classes
    model, source = create_model("cnn16", k, in_channels), Path(params.teacher.source)
    save_model(source, model, "cnn16", data.classes[:k], in_channels)
    path = Path(params.paths.teacher) / "model.pt"
    save_model(
        path,
        model,
        "cnn16",
        data.classes[:k],
        in_channels,
        source=str(source),
        version=f"sha256:{file_sha256(source)[:16]}",
    )
    return path


def _perturb_bn_buffers(model: torch.nn.Module) -> None:
    """Give the teacher non-default running statistics, as a trained teacher has."""
    gen = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(17)


def _srd_setup(params: Params, data: PreparedData) -> tuple:
    runtime = make_runtime(params.runtime)
    torch.manual_seed(0)
    teacher = create_model("cnn16", data.num_classes, data.in_channels)
    student = create_model("cnn8", data.num_classes, data.in_channels)
    distiller = create_distiller(params.method.name, student, teacher, **params.method.hyperparameters())
    loader = make_loader(data, "train", params.train.batch_size, params, runtime, train=True)
    return distiller, loader, runtime


def test_teacher_weights_and_bn_buffers_are_bit_identical_after_an_epoch(small: Callable[..., Params]) -> None:
    params = small()
    data = load_prepared(params.paths.prepared)
    distiller, loader, runtime = _srd_setup(params, data)
    _perturb_bn_buffers(distiller.teacher)
    teacher_before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in distiller.student.state_dict().items()}
    assert any(k.endswith("num_batches_tracked") for k in teacher_before)

    train(distiller, loader, None, params.train, runtime, Path(params.paths.checkpoints))

    teacher_after = distiller.teacher.state_dict()
    assert teacher_after.keys() == teacher_before.keys()
    for key, value in teacher_before.items():
        assert torch.equal(teacher_after[key], value), key
    assert not any(m.training for m in distiller.teacher.modules())
    student_after = distiller.student.state_dict()
    changed = [k for k, v in student_before.items() if not torch.equal(student_after[k], v)]
    assert any(k.endswith("running_mean") for k in changed), "the student's own BN statistics must move"
    assert any(k.endswith("weight") for k in changed)


def test_a_last_batch_of_one_image_does_not_crash(make_params: Callable[..., Params]) -> None:
    """801 training images at batch 100: eight full batches, the single leftover image is skipped."""
    params = make_params(
        data__train_subset=1001,
        data__val_size=200,
        data__test_subset=100,
        train__batch_size=BATCH,
        tracking__enabled=False,
    )
    steps.prepare_data(params)
    data = load_prepared(params.paths.prepared)
    assert len(data.split("train")[1]) == 8 * BATCH + 1
    distiller, loader, runtime = _srd_setup(params, data)
    assert [len(y) for _, y in loader] == [BATCH] * 8

    history = train(distiller, loader, None, params.train, runtime, Path(params.paths.checkpoints))

    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["loss"]))
    assert (Path(params.paths.checkpoints) / CHECKPOINT_FILE).is_file()


def _interrupt_after_first_epoch(params_file: Path, checkpoint: Path, cwd: Path, stop: int) -> str:
    """Run `kdpipe distill` in its own process and stop it with the signal ``stop`` once epoch 1 is saved, as
    Kubernetes stops a pod (SIGTERM) or the kernel's OOM killer does (SIGKILL); returns its stderr."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("kdpipe")), "distill", "-c", str(params_file)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(stop)
    finally:
        _, stderr = proc.communicate(timeout=60)
    expected = -stop if stop == signal.SIGKILL else 128 + stop
    assert proc.returncode == expected, f"exit {proc.returncode}, not {expected}: {stderr[-2000:]}"
    return stderr


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(
    small: Callable[..., Params],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    stop: int,
) -> None:
    """Stopped after epoch 1 by SIGKILL (no chance to speak) or by SIGTERM (a pod's eviction or preemption,
    tracked on a real ``mlflow server``), ``kdpipe distill --resume`` ends with the uninterrupted run's weights.
    SIGTERM also gives one line and no traceback, exit 143, and its MLflow run ends KILLED with the reason."""
    from kdpipe.cli import main

    straight = small(
        train__epochs=2, paths__student=str(tmp_path / "straight"), paths__checkpoints=str(tmp_path / "straight-ckpt")
    )
    experiment, tracked = f"sigterm-{tmp_path.name}", {}
    if stop == signal.SIGTERM:
        server = request.getfixturevalue("mlflow_server")
        tracked = {"tracking__enabled": True, "tracking__uri": server, "tracking__experiment": experiment}
    interrupted = small(train__epochs=2, **tracked)
    data = load_prepared(straight.paths.prepared)
    _install_teacher(straight, data)
    _install_teacher(interrupted, data)

    steps.distill(straight, resume=False)

    checkpoint = Path(interrupted.paths.checkpoints) / "student" / CHECKPOINT_FILE
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(interrupted.to_dict()))
    stderr = _interrupt_after_first_epoch(params_file, checkpoint, tmp_path, stop)
    assert load_checkpoint(checkpoint)["epoch"] == 0
    assert not (Path(interrupted.paths.student) / "model.pt").exists()
    if stop == signal.SIGTERM:
        assert "Traceback" not in stderr
        assert stderr.splitlines()[-1].startswith("kdpipe: terminated (SIGTERM: the pod was asked to stop")
        assert stderr.splitlines()[-1].endswith("rerun with --resume to continue from the last checkpoint")

    caplog.set_level(logging.INFO, logger="kdpipe")
    assert main(["distill", "-c", str(params_file), "--resume"]) == 0
    assert "resuming from" in caplog.text

    expected = load_model(Path(straight.paths.student) / "model.pt")[0].state_dict()
    resumed = load_model(Path(interrupted.paths.student) / "model.pt")[0].state_dict()
    assert expected.keys() == resumed.keys()
    for key, value in expected.items():
        assert torch.equal(resumed[key], value), key
    history = [(Path(p.paths.student) / "history.csv").read_text().splitlines() for p in (straight, interrupted)]
    assert len(history[0]) == len(history[1]) == 3
    if stop == signal.SIGTERM:
        import mlflow

        client = mlflow.MlflowClient(interrupted.tracking.uri)
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        runs = sorted(runs, key=lambda r: r.info.start_time)
        assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]
        assert runs[0].data.tags[tags.ERROR].startswith("Terminated: SIGTERM: the pod was asked to stop")


def test_resume_after_a_change_of_crop_padding_trains_anew_instead_of_reusing_the_checkpoint(
    small: Callable[..., Params], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`kdpipe distill --resume` (the DVC stage's command) must not hand back a student trained on
    other crops: crop_padding is part of the checkpoint's fingerprint. With the same padding it resumes."""
    padded, unpadded = small(data__crop_padding=2), small(data__crop_padding=0)
    fresh = small(
        data__crop_padding=0, paths__student=str(tmp_path / "fresh"), paths__checkpoints=str(tmp_path / "fresh-ckpt")
    )
    data = load_prepared(padded.paths.prepared)
    for params in (padded, fresh):
        _install_teacher(params, data)

    steps.distill(padded, resume=True)
    first = load_model(Path(padded.paths.student) / "model.pt")[0].state_dict()
    caplog.set_level(logging.INFO, logger="kdpipe")
    steps.distill(unpadded, resume=True)
    assert "was written for other params or data; starting from scratch" in caplog.text
    steps.distill(fresh, resume=False)
    second = load_model(Path(unpadded.paths.student) / "model.pt")[0].state_dict()
    reference = load_model(Path(fresh.paths.student) / "model.pt")[0].state_dict()
    assert all(torch.equal(second[k], reference[k]) for k in reference), "trained anew with padding 0"
    assert not all(torch.equal(second[k], first[k]) for k in first)

    caplog.clear()
    steps.distill(unpadded, resume=True)
    assert "resuming from" in caplog.text


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(small: Callable[..., Params]) -> None:
    """Epoch 1 trains normally; then the teacher turns out NaN, and epoch 2 must stop without a save."""
    one, two = small(train__epochs=1), small(train__epochs=2)
    data = load_prepared(one.paths.prepared)
    distiller, loader, runtime = _srd_setup(one, data)
    ckpt_dir = Path(one.paths.checkpoints)
    train(distiller, loader, None, one.train, runtime, ckpt_dir, fingerprint="run")
    good = (ckpt_dir / CHECKPOINT_FILE).read_bytes()

    with torch.no_grad():
        distiller.teacher.classifier.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 2") as info:
        train(distiller, loader, None, two.train, runtime, ckpt_dir, resume=True, fingerprint="run")

    assert "left intact" in str(info.value)
    assert (ckpt_dir / CHECKPOINT_FILE).read_bytes() == good


def test_absurd_learning_rate_fails_in_the_first_epoch_and_saves_no_student(small: Callable[..., Params]) -> None:
    params = small(train__lr=1e6)
    _install_teacher(params, load_prepared(params.paths.prepared))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1\b.*train\.lr"):
        steps.distill(params)
    assert not (Path(params.paths.student) / "model.pt").exists()
    assert not (Path(params.paths.checkpoints) / "student" / CHECKPOINT_FILE).exists()


def test_teacher_with_other_classes_is_refused_before_training(small: Callable[..., Params], tmp_path: Path) -> None:
    params = small()
    data = load_prepared(params.paths.prepared)
    five = tmp_path / "five-classes.pt"
    torch.manual_seed(0)
    save_model(five, create_model("cnn8", 5, 1), "cnn8", data.classes[:5], 1)

    with pytest.raises(TeacherMismatchError, match="5 classes"):
        steps.evaluate_teacher(small(teacher__source=str(five)))
    assert not (Path(params.paths.teacher) / "model.pt").exists()

    _install_teacher(params, data, num_classes=5)
    with pytest.raises(TeacherMismatchError, match="5 classes"):
        steps.distill(params)
    assert not Path(params.paths.checkpoints).exists()


def test_teacher_for_other_input_channels_is_refused(small: Callable[..., Params]) -> None:
    params = small()
    _install_teacher(params, load_prepared(params.paths.prepared), in_channels=3)
    with pytest.raises(TeacherMismatchError, match="input channels"):
        steps.distill(params)
    assert not Path(params.paths.checkpoints).exists()


def test_gpu_hours_are_the_ranks_gpus_times_the_wall_time_and_none_on_cpu() -> None:
    """Two CUDA ranks for 90 minutes are 3 GPU-hours (a device object only: no GPU is needed to name one)."""
    from kdpipe.training.runtime import Runtime, gpu_hours

    assert gpu_hours(Runtime(torch.device("cuda")), 2, 5400.0) == 3.0
    assert gpu_hours(Runtime(torch.device("cpu")), 2, 5400.0) == 0.0
