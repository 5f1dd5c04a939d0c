"""The tuning grids: the same number of settings for every method, scratch included, with ranges that bracket.

A baseline run at one untuned setting against a tuned recipe makes the recipe's gain look larger than it is, and
so does a baseline whose best setting lies at the end of its grid. Each method gets 20 settings, all at the
study's budget and over the same seeds:

- scratch: learning rate {0.025 ... 0.4} x weight decay {1e-4 ... 1e-3}; the two are the shared optimiser
  settings, tuned first and then applied to every other method's grid;
- kd and lskd: T in {1, 2, 4, 8, 16} x four (CE, KL) weightings (lskd's include the official 0.1, 9);
- fitnet: feature weight {3 ... 300} x CE weight {1, 0.5, 0.25, 0.1};
- srd: feature weight {0.5 ... 8} x LogSum alpha {2, 4} x (CE, KL) {(1, 1), (0.1, 0.9)};
- dkd: beta {1 ... 16} x T {1, 2, 4, 8}; dist: both relation weights {0.5 ... 8} x tau {1, 2, 4, 8};
- vkd: feature weight {0.25 ... 4} x four (CE, KL) weightings.

An axis marked ``extends`` is numeric and open-ended: when the chosen setting lies at one of its ends, the grid
grows one geometric step past it (:func:`edge_cells`) before the choice is final. Weightings (pairs of CE and KL
weights) and alpha are choices, not ranges, and do not extend.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from kdpipe.study.cells import Cell

PREFIX = "tune_"
SHARED_METHOD = "scratch"
"""Its grid is the shared optimiser settings: tuned first, then every other method trains with its choice."""
MAX_EXTENSIONS = 3
"""Steps past an end, per method; a choice still at an end after them is reported as such."""


@dataclass(frozen=True)
class Axis:
    """One dimension of a grid: each value sets ``keys`` (one number per key), named in cell names by ``tags`` (one
    per key, or one for keys tied to one number)."""

    tags: tuple[str, ...]
    keys: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    extends: bool = True

    def overrides(self, value: tuple[float, ...]) -> tuple[str, ...]:
        return tuple(f"{k}={_number(v)}" for k, v in zip(self.keys, value, strict=True))

    def describe(self, value: tuple[float, ...]) -> str:
        return ", ".join(f"{k.rsplit('.', 1)[1]}={v:g}" for k, v in zip(self.keys, value, strict=True))

    def label(self, value: tuple[float, ...]) -> str:
        return "_".join(f"{t}{v:g}" for t, v in zip(self.tags, value[: len(self.tags)], strict=True))

    def value_of(self, cell: Cell) -> tuple[float, ...]:
        given = dict(o.split("=", 1) for o in cell.overrides)
        return tuple(float(given[k]) for k in self.keys)


def _number(value: float) -> str:
    """A float as YAML reads it back as one: ``4e-05`` would be a string, ``0.00004`` is a float."""
    text = repr(value)
    return f"{value:.12f}".rstrip("0") if "e" in text else text


def numeric(tag: str, keys: tuple[str, ...], values: tuple[float, ...]) -> Axis:
    """A range: ``keys`` all take each value (dist ties its two weights), and a choice at an end extends it."""
    return Axis((tag,), keys, tuple((v,) * len(keys) for v in values), extends=True)


def choices(tags: tuple[str, ...], keys: tuple[str, ...], values: tuple[tuple[float, ...], ...]) -> Axis:
    """Named alternatives (a CE and KL weighting, an exponent): never extended."""
    return Axis(tags, keys, values, extends=False)


@dataclass(frozen=True)
class Grid:
    method: str
    axes: tuple[Axis, ...]

    def cell(self, point: tuple[tuple[float, ...], ...], shared: tuple[str, ...] = ()) -> Cell:
        labels = "_".join(a.label(v) for a, v in zip(self.axes, point, strict=True))
        overrides = [f"method.name={self.method}", *shared]
        for axis, value in zip(self.axes, point, strict=True):
            overrides += axis.overrides(value)
        what = ", ".join(a.describe(v) for a, v in zip(self.axes, point, strict=True))
        return Cell(f"{PREFIX}{self.method}_{labels}", tuple(overrides), f"{self.method}, {what}")

    def cells(self, shared: tuple[str, ...] = ()) -> list[Cell]:
        """Every setting of the grid, in grid order, each with the ``shared`` overrides (scratch's choice)."""
        return [self.cell(point, shared) for point in itertools.product(*(a.values for a in self.axes))]

    def point(self, cell: Cell) -> tuple[tuple[float, ...], ...]:
        return tuple(a.value_of(cell) for a in self.axes)


def _weights(method: str, pairs: tuple[tuple[float, float], ...]) -> Axis:
    return choices(("ce", "kl"), (f"method.{method}.ce_weight", f"method.{method}.kl_weight"), pairs)


_KD_WEIGHTS = ((1.0, 1.0), (0.5, 0.5), (0.25, 0.75), (0.1, 0.9))
_TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0)

GRIDS: dict[str, Grid] = {
    g.method: g
    for g in (
        Grid(
            "scratch",
            (
                numeric("lr", ("train.lr",), (0.025, 0.05, 0.1, 0.2, 0.4)),
                numeric("wd", ("train.weight_decay",), (0.0001, 0.00025, 0.0005, 0.001)),
            ),
        ),
        Grid("kd", (numeric("t", ("method.kd.temperature",), _TEMPERATURES), _weights("kd", _KD_WEIGHTS))),
        Grid(
            "lskd",
            (
                numeric("t", ("method.lskd.temperature",), _TEMPERATURES),
                _weights("lskd", ((1.0, 1.0), (0.5, 0.5), (0.1, 0.9), (0.1, 9.0))),
            ),
        ),
        Grid(
            "fitnet",
            (
                numeric("feat", ("method.fitnet.feat_weight",), (3.0, 10.0, 30.0, 100.0, 300.0)),
                choices(("ce",), ("method.fitnet.ce_weight",), ((1.0,), (0.5,), (0.25,), (0.1,))),
            ),
        ),
        Grid(
            "srd",
            (
                numeric("feat", ("method.srd.feat_weight",), (0.5, 1.0, 2.0, 4.0, 8.0)),
                choices(("a",), ("method.srd.alpha",), ((2.0,), (4.0,))),
                _weights("srd", ((1.0, 1.0), (0.1, 0.9))),
            ),
        ),
        Grid(
            "dkd",
            (
                numeric("beta", ("method.dkd.beta",), (1.0, 2.0, 4.0, 8.0, 16.0)),
                numeric("t", ("method.dkd.temperature",), (1.0, 2.0, 4.0, 8.0)),
            ),
        ),
        Grid(
            "dist",
            (
                numeric("w", ("method.dist.inter_weight", "method.dist.intra_weight"), (0.5, 1.0, 2.0, 4.0, 8.0)),
                numeric("tau", ("method.dist.temperature",), (1.0, 2.0, 4.0, 8.0)),
            ),
        ),
        Grid(
            "vkd",
            (numeric("feat", ("method.vkd.feat_weight",), (0.25, 0.5, 1.0, 2.0, 4.0)), _weights("vkd", _KD_WEIGHTS)),
        ),
    )
}


def edge_cells(grid: Grid, tried: list[Cell], chosen: Cell) -> list[Cell]:
    """One geometric step past each extending axis at whose end ``chosen`` lies among the values ``tried`` on it,
    the other axes as chosen (and the same shared overrides); none when every choice is inside its range."""
    point = grid.point(chosen)
    own = {k for a in grid.axes for k in a.keys}
    shared = tuple(o for o in chosen.overrides[1:] if o.split("=", 1)[0] not in own)
    names = {c.name for c in tried}
    found = []
    for i, axis in enumerate(grid.axes):
        seen = sorted({axis.value_of(c)[0] for c in tried})
        if not axis.extends or len(seen) < 2:
            continue
        value = point[i][0]
        if value == seen[-1]:
            step = float(f"{value * value / seen[-2]:.12g}")
        elif value == seen[0]:
            step = float(f"{value * value / seen[1]:.12g}")
        else:
            continue
        beyond = grid.cell((*point[:i], (step,) * len(axis.keys), *point[i + 1 :]), shared)
        if beyond.name not in names:
            found.append(beyond)
    return found


def knobs(cell: Cell) -> list[str]:
    """The setting a grid cell tries, as ``-p`` overrides (the method name left out)."""
    return [o for o in cell.overrides if not o.startswith("method.name=")]
