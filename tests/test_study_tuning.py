"""`kdpipe study --tune`: every method's grid trained, each choice made on val alone, all of it in MLflow;
and the stability curves drawn from the runs' epoch records."""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from conftest import PARAMS_FILE, TINY, write_params
from kdpipe.cli import main
from kdpipe.config import Params
from kdpipe.infra.errors import KdpipeError
from kdpipe.study import phases, pods, stability, tune_rounds, tuning
from kdpipe.study.grids import MAX_EXTENSIONS, Grid, choices, numeric
from kdpipe.study.plan import make_plan
from kdpipe.tracking.tags import STEP, STUDY_ID, STUDY_PHASE

SMALL_GRIDS = {
    "scratch": Grid(
        "scratch",
        (numeric("lr", ("train.lr",), (0.05, 0.1)), choices(("wd",), ("train.weight_decay",), ((0.0005,),))),
    ),
    "kd": Grid("kd", (choices(("t",), ("method.kd.temperature",), ((2.0,), (4.0,))),)),
}


def test_tune_chooses_scratchs_shared_settings_first_then_each_method_with_them_extending_choices_at_an_end(
    make_params: Callable[..., Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rounds on two-setting grids (the real ones are 20 settings of 8 methods: tests/test_study_grids.py
    checks them without training): scratch's learning rate is a range, so its first choice lies at an end and
    must be extended; kd's two temperatures are choices here, never extended. Whatever val says, the files must
    show the rule: each choice the best mean val over seeds 0 and 1 of every setting tried, the settings past
    the ends one geometric step apart, a final choice inside its range unless all MAX_EXTENSIONS steps were
    used, and kd trained with scratch's choice."""
    monkeypatch.setattr(tuning, "GRIDS", SMALL_GRIDS)
    monkeypatch.setattr(tune_rounds, "GRIDS", SMALL_GRIDS)
    params = make_params(**TINY)  # validate.corruptions fast: the tuning leaves the suite out on its own
    assert params.validate_.corruptions != "none"
    params_file = write_params(params, tmp_path / "params.yaml")
    study = tmp_path / "tune"

    assert main(["study", "-c", str(params_file), "--dir", str(study), "--tune", "--jobs", "2"]) == 0

    results = [json.loads(p.read_text()) for p in study.glob("runs/*/seed*/result.json")]
    by_cell: dict[str, list[dict]] = {}
    for r in results:
        by_cell.setdefault(r["cell"], []).append(r)
    assert all(sorted(r["seed"] for r in runs) == [0, 1] for runs in by_cell.values())
    assert not any("test_corrupted_top1" in r for r in results)
    choices = json.loads((study / "tuning.json").read_text())["choices"]
    assert set(choices) == {"scratch", "kd"}
    shared = choices["scratch"]["overrides"]
    lr = float(shared[0].split("=")[1])
    for method, key, grid in (("scratch", "train.lr", (0.05, 0.1)), ("kd", "method.kd.temperature", (2.0, 4.0))):
        cells = [c for c in by_cell if by_cell[c][0]["method"] == method]
        val = {c: statistics.fmean(r["val_top1"] for r in by_cell[c]) for c in cells}
        chosen = choices[method]
        best = max(val.values())
        assert val[chosen["cell"]] == best and chosen["val_top1"] == pytest.approx(best)
        in_grid = sorted(
            (c for c in cells if val[c] == best and _value(by_cell[c][0], key) in grid),
            key=lambda c: grid.index(_value(by_cell[c][0], key)),
        )
        assert not in_grid or chosen["cell"] == in_grid[0]  # a tie goes to the grid's earlier setting
        values = sorted(_value(by_cell[c][0], key) for c in cells)
        if method == "kd":  # choices: never extended, and trained with scratch's choice
            assert values == [2.0, 4.0] and chosen["extensions"] == 0 and chosen["still_at_edge"] == []
            assert all(r["params"]["train"]["lr"] == lr for c in cells for r in by_cell[c])
            assert set(shared) <= set(chosen["overrides"])
            continue
        assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(values)), values  # one step apart
        assert set(grid) <= set(values) and chosen["extensions"] == len(values) - 2 <= MAX_EXTENSIONS
        picked = _value(by_cell[chosen["cell"]][0], key)
        inside = values[0] < picked < values[-1]
        assert inside or chosen["extensions"] == MAX_EXTENSIONS
        assert (chosen["still_at_edge"] == []) == inside
    report = (study / "report.md").read_text()
    assert report.count("**yes**") == 2 and "test top-1 reported, not used" in report

    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    study_id = json.loads((study / "study.json").read_text())["study_id"]
    runs = client.search_runs([experiment], filter_string=f"tags.`{STUDY_ID}` = '{study_id}'", max_results=500)
    cells = [r for r in runs if r.data.tags.get(STEP) == "study_cell"]
    assert len(cells) == len(by_cell) and {r.data.tags[STUDY_PHASE] for r in cells} == {"tune"}
    (parent,) = [r for r in runs if r.data.tags.get(STEP) == "study"]
    for method in ("scratch", "kd"):
        assert parent.data.params[f"tuned.{method}"] == " ".join(choices[method]["overrides"])


DIVERGING_GRIDS = {
    "scratch": Grid(
        "scratch", (choices(("lr",), ("train.lr",), ((0.4,),)), choices(("wd",), ("train.weight_decay",), ((0.001,),)))
    ),
    "fitnet": Grid("fitnet", (choices(("feat",), ("method.fitnet.feat_weight",), ((1.0,), (100000.0,))),)),
}


def test_a_setting_whose_loss_stops_being_finite_is_ruled_out_reported_and_not_retried(
    make_params: Callable[..., Params],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """fitnet's feature weight of 1e5 diverges under every seed: the tuning keeps those runs as diverged, chooses
    among the rest, says so in tuning.json, the report and results.json, and a rerun does not train them again; any
    other phase stops on a diverged run and names it, and so does the Kubeflow study's report step."""
    monkeypatch.setattr(tuning, "GRIDS", DIVERGING_GRIDS)
    monkeypatch.setattr(tune_rounds, "GRIDS", DIVERGING_GRIDS)
    params_file = write_params(make_params(**TINY), tmp_path / "params.yaml")
    study = tmp_path / "tune"
    command = ["study", "-c", str(params_file), "--dir", str(study), "--tune", "--jobs", "2"]

    assert main(command) == 0

    runs = json.loads((study / "results.json").read_text())["runs"]
    lost = [r for r in runs if "method.fitnet.feat_weight=100000.0" in r["overrides"]]
    assert sorted(r["seed"] for r in lost) == [0, 1]
    assert all("loss became" in r["diverged"] and r["val_top1"] is None for r in lost)
    assert not any("diverged" in r for r in runs if r not in lost)
    fitnet = json.loads((study / "tuning.json").read_text())["choices"]["fitnet"]
    assert "method.fitnet.feat_weight=1.0" in fitnet["overrides"] and fitnet["diverged"] == [lost[0]["cell"]]
    assert fitnet["extensions"] == 0
    assert "Ruled out, the loss stopped being finite" in (study / "report.md").read_text()
    assert "diverged" in (study / "results.csv").read_text().splitlines()[0]

    kept = {r["id"]: (study / "runs" / r["id"] / "result.json").stat().st_mtime_ns for r in lost}
    assert main(command) == 0
    assert {i: (study / "runs" / i / "result.json").stat().st_mtime_ns for i in kept} == kept

    capsys.readouterr()
    other = ["study", "-c", str(params_file), "--dir", str(tmp_path / "main"), "--cells", "fitnet", "--no-gap"]
    wild = ["-p", "train.lr=0.4", "-p", "method.fitnet.feat_weight=100000"]
    assert main([*other, "--seeds", "0", *wild]) == 2
    err = capsys.readouterr().err
    assert "1 run(s) diverged (fitnet/seed0: distill[fitnet]: loss became nan" in err
    assert "rerunning does not retry them" in err

    # The Kubeflow study's report step, called here as its component calls it (no Kubeflow), stops on it too,
    # before it writes anything.
    result = (tmp_path / "main" / "runs" / "fitnet" / "seed0" / "result.json").read_text()
    plan = make_plan(make_params(**TINY), ["fitnet"], [0], gap=False, phase=phases.CONFIRM.name).as_dict()
    kfp = tmp_path / "kfp"
    with pytest.raises(KdpipeError, match=r"1 run\(s\) diverged \(fitnet/seed0: distill\[fitnet\]: loss became nan"):
        pods.report(make_params(**TINY), plan, "run-1", [], [result], study_dir=str(kfp), report_copy="", command="")
    assert not kfp.exists()


def _value(result: dict, dotted: str) -> float:
    tree = result["params"]
    for part in dotted.split("."):
        tree = tree[part]
    return float(tree)


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
