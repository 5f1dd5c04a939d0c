"""`kdpipe study --kubeflow`: the study as a Kubeflow fan-out, run under kfp.local on real Fashion-MNIST.

The whole graph runs: prepare, a teacher and its outputs per role, a ``ParallelFor`` of one task per
(cell, seed), and the report step over ``dsl.Collected`` results. Every task is a subprocess
(kfp.local's SubprocessRunner). The local study then runs the same plan in this process; on CPU
with one thread both must give the same numbers and the same report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import yaml

from conftest import PARAMS_FILE, TINY
from kdpipe import steps
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.kubeflow.params import dump_params
from kdpipe.study import budget, fanout, phases
from kdpipe.study.mlflow_log import PARENT_TAG
from kdpipe.study.plan import make_plan
from kdpipe.tracking.tags import STUDY_ID as STUDY_TAG

TWO_EPOCHS = {**TINY, "train__epochs": 2, "runtime__num_threads": 1}
PLAN = ["--cells", "scratch", "srd", "gap_small_srd", "--seeds", "0", "1"]
TIMING_COLUMNS = ("train s", "images/s")


def _comparable(report: str) -> list[str]:
    """The report without what differs between any two studies: the id, the command, the timings."""
    lines, drop = [], set()
    for line in report.splitlines():
        if line.startswith(("# kdpipe study ", "- reproduce:", "- compute:")):
            continue
        cells = line.split(" | ")
        if "| cell | what it changes" in line:
            drop = {i for i, c in enumerate(cells) if c in TIMING_COLUMNS}
        elif not line.startswith("|"):
            drop = set()
        lines.append(" | ".join("?" if i in drop else c for i, c in enumerate(cells)))
    return lines


def _results(study_dir: Path) -> dict[tuple[str, int], dict[str, float]]:
    runs = json.loads((study_dir / "results.json").read_text())["runs"]
    keys = ("test_top1", "val_top1", "test_corrupted_top1")
    return {(r["cell"], r["seed"]): {k: r[k] for k in keys} for r in runs}


def test_the_study_pipeline_fans_out_under_kfp_local_and_reports_as_the_local_study(
    make_params: Callable[..., Params],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    params = make_params(**TWO_EPOCHS)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(dump_params(params))
    assert (
        main(
            [
                "study",
                "--kubeflow",
                "run-local",
                "-c",
                str(params_file),
                *PLAN,
                "--pipeline-root",
                str(tmp_path / "kfp"),
            ]
        )
        == 0
    )
    out = capfd.readouterr().out
    found = re.search(r"^the study's report, plot and results: (.+)$", out, re.MULTILINE)
    assert found, "run-local did not say where the study's report is"
    kfp_study = Path(found.group(1))
    run_dir = kfp_study.parents[1]

    # One task per (cell, seed), each with its own student; the teacher outputs recorded once per seed and role.
    students = sorted(run_dir.glob("for-loop-*/**/student/model.pt"))
    assert len(students) == 6, students
    outputs = [
        json.loads((d / "executor_output.json").read_text())["artifacts"]["outputs"]["artifacts"][0]["metadata"]
        for d in sorted(run_dir.glob("study-teacher-outputs*"))
    ]
    assert sorted(o["role"] for o in outputs) == ["main", "small"]
    assert all(o["recorded"] == 2 * 2 for o in outputs)  # 2 seeds x 2 epochs, for each teacher
    assert len(re.findall(r"teacher cache \S+: 2 of 2 epoch\(s\) cached\n", out)) == 4
    # The report step: the Markdown for the UI is the study's report.
    report = (kfp_study / "report.md").read_text()
    assert (run_dir / "study-report" / "report").read_text() == report
    assert (kfp_study / "study.png").stat().st_size > 0

    # MLflow: the parent run, one child per cell, one grandchild per seed of each.
    study_id = json.loads((kfp_study / "study.json").read_text())["study_id"]
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study_id}'")
    (parent,) = [r for r in runs if PARENT_TAG not in r.data.tags]
    cells = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
    assert sorted(r.info.run_name for r in cells) == ["gap_small_srd", "scratch", "srd"]
    assert len(runs) == 1 + 3 + 6

    # The same plan as a local study: the same numbers, the same report but for the id, command and timings.
    local_dir = tmp_path / "local-study"
    assert main(["study", "-c", str(params_file), *PLAN, "--dir", str(local_dir)]) == 0
    assert _results(kfp_study) == _results(local_dir)
    assert _comparable(report) == _comparable((local_dir / "report.md").read_text())
    assert "| srd | the recipe" in report and "small: cnn16_fc256" in report


def test_the_compiled_study_has_a_bounded_fan_out_of_gpu_runs_that_retry(tmp_path: Path) -> None:
    out = tmp_path / "study.yaml"
    assert (
        main(
            [
                "study",
                "-c",
                PARAMS_FILE,
                "--kubeflow",
                "compile",
                "-o",
                str(out),
                "--cells",
                "scratch",
                "kd",
                "srd",
                "gap_small_kd",
                "--seeds",
                "0",
                "1",
                "2",
                "--parallelism",
                "3",
            ]
        )
        == 0
    )
    spec, platform = yaml.safe_load_all(out.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    loops = {name: t for name, t in tasks.items() if "parameterIterator" in t}
    items = [json.loads(t["parameterIterator"]["items"]["raw"]) for t in loops.values()]
    assert sorted(len(i) for i in items) == [3, 9]  # the small teacher's one cell, the study teacher's three
    assert all(t["iteratorPolicy"]["parallelismLimit"] == 3 for t in loops.values())
    assert set(tasks["study-report"]["dependentTasks"]) >= set(loops)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    runs = [name for name in executors if name.startswith("exec-study-run")]
    assert len(runs) == 2 and all(executors[r]["nodeSelector"] for r in runs)
    inner = [spec["components"][t["componentRef"]["name"]]["dag"]["tasks"] for t in loops.values()]
    assert all(next(iter(dag.values()))["retryPolicy"]["maxRetryCount"] == 3 for dag in inner)
    resources = spec["deploymentSpec"]["executors"]["exec-study-run"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "1"


@pytest.mark.parametrize("phase", ["tune", "full"])
def test_the_tuning_and_full_data_phases_are_refused_on_kubeflow_naming_why(
    phase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tuning's rounds are built from the previous round's choices, and --full reads its baseline from the
    tuning study: a pipeline compiled ahead knows neither."""
    out = tmp_path / f"{phase}.yaml"
    assert main(["study", "-c", PARAMS_FILE, "--kubeflow", "compile", "-o", str(out), f"--{phase}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kdpipe: error: --{phase} ") and "\n" not in err
    assert err.endswith(f"run kdpipe study --{phase} on one machine")
    assert not out.exists()


def test_a_bad_plan_is_refused_before_compiling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study.yaml"
    assert main(["study", "-c", PARAMS_FILE, "--kubeflow", "compile", "-o", str(out), "--cells", "nope"]) == 2
    assert "--cells: unknown cell(s) nope" in capsys.readouterr().err
    assert main(["study", "-c", PARAMS_FILE, "--kubeflow", "compile", "-o", str(out), "--parallelism", "0"]) == 2
    assert "--parallelism: must be at least 1" in capsys.readouterr().err
    assert main(["study", "-c", PARAMS_FILE, "--kubeflow", "submit"]) == 2
    assert "--kubeflow submit needs --host" in capsys.readouterr().err
    assert not out.exists()


def test_the_kubeflow_teacher_outputs_task_fills_each_size_of_the_budget_phase_once_per_seed(
    make_params: Callable[..., Params], tmp_path: Path
) -> None:
    """The task's function as its component calls it (the component itself runs under kfp.local above): each size of
    the transfer set is a view of its own, so grouping by seed alone would leave every size but one to record live."""
    base = make_params(**TINY)
    steps.prepare_data(base)
    plan = make_plan(base, list(phases.BUDGET.cells), [0, 1], gap=False, data_seeds=[1], phase=phases.BUDGET.name)
    work = tmp_path / "work"
    fanout.teacher(base, plan, "main", work)
    outputs = fanout.teacher_outputs(base, plan, "main", work)

    keys = [json.loads(p.read_text()) for p in Path(base.paths.teacher_cache).glob("*/key.json")]
    assert sorted((k["subset"] or 0, k["view_seed"], k["sample_seed"]) for k in keys) == sorted(
        (n or 0, s, 1) for n in budget.SIZES for s in (0, 1)
    )
    assert len(outputs["fills"]) == len(keys)
    assert outputs["recorded"] == 2 * sum(budget.epochs(n) for n in budget.SIZES)
