"""`kdpipe study --tune`: every method's grid trained, each choice made on val alone, all of it in MLflow;
and the stability curves drawn from the runs' epoch records."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from conftest import PARAMS_FILE, TINY, write_params
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.study import stability
from kdpipe.study.grids import tuning_cells
from kdpipe.tracking.tags import STEP, STUDY_ID, STUDY_PHASE


def test_tune_trains_each_methods_grid_and_chooses_its_best_val_setting(
    make_params: Callable[..., Params], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = make_params(**TINY, validate__corruptions="none")
    params_file = write_params(params, tmp_path / "params.yaml")
    study = tmp_path / "tune"

    assert main(["study", "-c", str(params_file), "--dir", str(study), "--tune", "--jobs", "2"]) == 0

    grid = [c.name for c in tuning_cells()]
    results = {p.parent.parent.name: json.loads(p.read_text()) for p in study.glob("runs/*/seed*/result.json")}
    assert sorted(results) == sorted(grid) and {r["seed"] for r in results.values()} == {0}
    assert Counter(r["method"] for r in results.values()) == {"kd": 12, "fitnet": 12, "srd": 12}
    choices = json.loads((study / "tuning.json").read_text())
    assert choices["selected_on"] == "val_top1"
    for method in ("kd", "fitnet", "srd"):
        mine = [name for name in grid if results[name]["method"] == method]
        best = sorted(mine, key=lambda name: (-results[name]["val_top1"], mine.index(name)))[0]
        chosen = choices["choices"][method]
        assert chosen["cell"] == best and chosen["grid_size"] == 12
        assert chosen["val_top1"] == results[best]["val_top1"]
        assert all(f"-p {o}" in (study / "report.md").read_text() for o in chosen["overrides"])
    report = (study / "report.md").read_text()
    assert report.count("**yes**") == 3 and "test top-1 reported, not used" in report
    assert not (study / "study.png").exists()  # a grid is a table, not a bar chart

    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    study_id = json.loads((study / "study.json").read_text())["study_id"]
    runs = client.search_runs([experiment], filter_string=f"tags.`{STUDY_ID}` = '{study_id}'", max_results=500)
    cells = [r for r in runs if r.data.tags.get(STEP) == "study_cell"]
    assert len(cells) == 36 and {r.data.tags[STUDY_PHASE] for r in cells} == {"tune"}
    (parent,) = [r for r in runs if r.data.tags.get(STEP) == "study"]
    for method in ("kd", "fitnet", "srd"):
        assert parent.data.params[f"tuned.{method}"] == " ".join(choices["choices"][method]["overrides"])


def test_tune_refuses_a_cell_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "-c", PARAMS_FILE, "--dir", str(tmp_path / "t"), "--tune", "--cells", "srd"]) == 2
    assert capsys.readouterr().err.strip() == "kdpipe: error: --tune names its own cells; leave out --cells"
    assert not (tmp_path / "t").exists()


def _run(seed: int, val: list[float], rank: list[float] | None = None) -> dict[str, object]:
    history = [
        {"epoch": e + 1, "val_acc": v, **({"projector_effective_rank": rank[e]} if rank else {})}
        for e, v in enumerate(val)
    ]
    return {"seed": seed, "history": history}


def test_a_stability_curve_is_the_mean_and_sample_std_over_seeds_per_epoch() -> None:
    epochs, mean, std = stability.curve([_run(0, [0.5, 0.7]), _run(1, [0.7, 0.8]), _run(2, [0.6, 0.9])], "val_acc")
    assert epochs == [1, 2]
    assert mean == pytest.approx([0.6, 0.8])
    assert std == pytest.approx([0.1, 0.1])
    assert stability.curve([_run(0, [0.5])], "projector_effective_rank") is None


def test_stability_curves_are_drawn_for_the_cells_a_study_ran_and_only_then(tmp_path: Path) -> None:
    path = tmp_path / "stability.png"
    assert not stability.plot(path, {"scratch": [_run(0, [0.5, 0.6])]}) and not path.exists()
    assert stability.plot(path, {"srd": [_run(0, [0.5, 0.6], [3.0, 4.0])], "kd": [_run(0, [0.4, 0.6])]})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
