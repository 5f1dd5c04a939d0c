"""The repository's dvc.yaml under real DVC: repro, metrics, params diff and plots in a fresh git repo.

The test copies dvc.yaml, the package sources its stages depend on and a shrunken params.yaml
into a temporary git repository, so it checks the stage graph that users run, not a stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _small_params(raw_root: Path) -> dict:
    """The repository's params.yaml with tiny data, tiny models and one epoch; paths stay relative."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(root=str(raw_root), train_subset=1000, val_size=200, test_subset=500)
    params["teacher"]["arch"] = "cnn16"
    params["teacher"]["train"].update(epochs=1, batch_size=128)
    params["student"]["arch"] = "cnn8"
    params["train"].update(epochs=1, batch_size=128)
    params["runtime"].update(device="cpu", num_threads=2, progress="off")
    params["validate"].update(min_top1=0.0, max_teacher_gap=None, max_latency_ms=None)
    params["tracking"]["enabled"] = False
    return params


def _run(cwd: Path, *cmd: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    result = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _dvc_repo(repo: Path, params: dict) -> str:
    """A fresh git + DVC repository with the real dvc.yaml, the package sources and ``params``; returns dvc's path."""
    shutil.copytree(REPO / "src" / "kdpipe", repo / "src" / "kdpipe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(REPO / "scripts", repo / "scripts")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = str(VENV_BIN / "dvc")
    _run(repo, "git", "init", "-q")
    _run(repo, dvc, "init", "-q")
    return dvc


def test_dvc_repro_metrics_params_and_plots(tmp_path: Path, raw_root: Path) -> None:
    repo = tmp_path / "repo"
    params = _small_params(raw_root)
    dvc = _dvc_repo(repo, params)

    _run(repo, dvc, "repro")
    assert json.loads(_run(repo, dvc, "status", "--json")) == {}
    for out in (
        "data/prepared/manifest.json",
        "artifacts/teacher/model.pt",
        "artifacts/student/model.pt",
        "artifacts/validation/decision.json",
        "artifacts/promotion/promotion.json",
        "dvc.lock",
    ):
        assert (repo / out).is_file(), out
    example = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["operational_example"]
    assert example["outs"][0]["path"] == "data/operational/fashion-reshot" and example["outs"][0]["nfiles"] == 10_000
    assert len(list((repo / "data" / "operational" / "fashion-reshot").glob("*/*.png"))) == 10_000

    metrics = json.loads(_run(repo, dvc, "metrics", "show", "--json"))
    (workspace,) = metrics.values()
    files = workspace["data"]
    teacher = files["artifacts/teacher/metrics.json"]["data"]
    student = files["artifacts/student/metrics.json"]["data"]
    validation = files["artifacts/validation/metrics.json"]["data"]
    assert 0.0 <= teacher["top1"] <= 1.0 and teacher["arch"] == "cnn16"
    assert student["method"] == "srd" and student["epochs"] == 1
    assert validation["student"]["top1"] >= 0.0 and validation["passed"] is True

    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "baseline")
    alpha, lr = params["method"]["srd"]["alpha"], params["train"]["lr"]
    assert alpha != 2.0 and lr != 0.05  # both edits must show in the diff
    params["method"]["srd"]["alpha"] = 2.0
    params["train"]["lr"] = 0.05
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = json.loads(_run(repo, dvc, "params", "diff", "--json"))["params.yaml"]
    assert (diff["method.srd.alpha"]["old"], diff["method.srd.alpha"]["new"]) == (alpha, 2.0)
    assert (diff["train.lr"]["old"], diff["train.lr"]["new"]) == (lr, 0.05)
    assert set(diff) == {"method.srd.alpha", "train.lr"}
    assert "distill" in json.loads(_run(repo, dvc, "status", "--json"))

    _run(repo, dvc, "plots", "show", "-o", "plots")
    html = (repo / "plots" / "index.html").read_text()
    for column in ('"loss_ce"', '"loss_kl"', '"loss_feat"', '"val_acc"', '"lr"'):
        assert column in html, column


def test_changing_data_crop_padding_makes_dvc_status_report_the_distill_stage_changed(
    tmp_path: Path, raw_root: Path
) -> None:
    """A real ``dvc repro distill`` (prepare, teacher, distill) on a few hundred images records the
    stages' params in dvc.lock; editing params.yaml then shows in ``dvc status`` exactly where the
    stages read the key: data.crop_padding in the two training stages, not in prepare."""
    repo = tmp_path / "repo"
    params = _small_params(raw_root)
    params["data"].update(train_subset=400, val_size=100, test_subset=100)
    params["teacher"]["train"]["batch_size"] = params["train"]["batch_size"] = 64
    params["train"]["subset"] = None
    params["runtime"]["num_threads"] = 1
    dvc = _dvc_repo(repo, params)
    _run(repo, dvc, "repro", "distill")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock["distill"]["params"]["params.yaml"]["data.crop_padding"] == 2
    assert "data.crop_padding" not in lock["prepare"]["params"]["params.yaml"]
    assert json.loads(_run(repo, dvc, "status", "--with-deps", "--json", "distill")) == {}

    params["runtime"]["progress"] = "log"  # display only: no stage reads it for its outputs
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert json.loads(_run(repo, dvc, "status", "--with-deps", "--json", "distill")) == {}

    params["data"]["crop_padding"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(_run(repo, dvc, "status", "--with-deps", "--json", "distill"))
    changed = {"changed deps": {"params.yaml": {"data.crop_padding": "modified"}}}
    assert status == {"teacher": [changed], "distill": [changed]}, status
