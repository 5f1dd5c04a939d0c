"""The tuning grids as the issue asks for them, and the rule that extends a grid past a choice at its end."""

from __future__ import annotations

import yaml

from kdpipe.config import params_from_dict
from kdpipe.config.params import apply_overrides
from kdpipe.distill import METHODS
from kdpipe.study.grids import GRIDS, PREFIX, SHARED_METHOD, edge_cells


def test_every_method_has_a_grid_of_the_same_size_of_at_least_16_settings_scratch_first() -> None:
    assert set(GRIDS) == set(METHODS.names())
    assert next(iter(GRIDS)) == SHARED_METHOD
    sizes = {method: len(grid.cells()) for method, grid in GRIDS.items()}
    assert len(set(sizes.values())) == 1 and min(sizes.values()) >= 16, sizes


def test_kd_and_lskd_try_temperatures_1_to_16_and_scratch_tunes_the_shared_optimiser_settings() -> None:
    for method in ("kd", "lskd"):
        temperatures = {
            float(dict(o.split("=") for o in c.overrides)[f"method.{method}.temperature"])
            for c in GRIDS[method].cells()
        }
        assert temperatures == {1.0, 2.0, 4.0, 8.0, 16.0}
    keys = {o.split("=")[0] for c in GRIDS[SHARED_METHOD].cells() for o in c.overrides}
    assert keys == {"method.name", "train.lr", "train.weight_decay"}


def test_every_grid_cell_is_valid_params_with_distinct_names_and_carries_the_shared_settings() -> None:
    """Each override is read back by YAML as the number it is (a bare ``4e-05`` would be a string)."""
    shared = ("train.lr=0.05", "train.weight_decay=0.00004")
    base = params_from_dict({}).to_dict()
    names = []
    for method, grid in GRIDS.items():
        for cell in grid.cells(() if method == SHARED_METHOD else shared):
            assert cell.name.startswith(f"{PREFIX}{method}_") and cell.method == method
            for override in cell.overrides[1:]:  # after method.name=...
                assert isinstance(yaml.safe_load(override.split("=", 1)[1]), float), override
            params = params_from_dict(apply_overrides(base, list(cell.overrides)))
            if method != SHARED_METHOD:
                assert (params.train.lr, params.train.weight_decay) == (0.05, 0.00004)
            names.append(cell.name)
    assert len(names) == len(set(names))


def test_a_choice_at_the_top_of_a_range_tries_one_geometric_step_beyond_with_the_other_axes_as_chosen() -> None:
    kd = GRIDS["kd"]
    tried = kd.cells(("train.lr=0.1",))
    (top,) = [c for c in tried if c.name == "tune_kd_t16_ce0.5_kl0.5"]
    (beyond,) = edge_cells(kd, tried, top)
    assert beyond.name == "tune_kd_t32_ce0.5_kl0.5"
    assert beyond.overrides == (
        "method.name=kd",
        "train.lr=0.1",
        "method.kd.temperature=32.0",
        "method.kd.ce_weight=0.5",
        "method.kd.kl_weight=0.5",
    )
    assert edge_cells(kd, [*tried, beyond], top) == []  # tried already: the range now reaches past the choice


def test_a_choice_at_a_corner_extends_each_of_its_ranges_and_one_inside_or_on_a_choice_axis_extends_nothing() -> None:
    scratch = GRIDS["scratch"]
    tried = scratch.cells()
    corner = tried[0]  # the lowest learning rate and weight decay
    assert [c.name for c in edge_cells(scratch, tried, corner)] == [
        "tune_scratch_lr0.0125_wd0.0001",
        "tune_scratch_lr0.025_wd4e-05",
    ]
    inside = next(c for c in tried if c.name == "tune_scratch_lr0.1_wd0.0005")
    assert edge_cells(scratch, tried, inside) == []
    fitnet = GRIDS["fitnet"]
    middle_weight_last_ce = next(c for c in fitnet.cells() if c.name == "tune_fitnet_feat30_ce0.1")
    assert edge_cells(fitnet, fitnet.cells(), middle_weight_last_ce) == []  # the CE weights are choices


def test_dist_extends_its_two_tied_weights_together() -> None:
    dist = GRIDS["dist"]
    tried = dist.cells()
    top = next(c for c in tried if c.name == "tune_dist_w8_tau2")
    (beyond,) = edge_cells(dist, tried, top)
    assert beyond.name == "tune_dist_w16_tau2"
    assert {"method.dist.inter_weight=16.0", "method.dist.intra_weight=16.0"} <= set(beyond.overrides)
