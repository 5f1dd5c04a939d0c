"""The tuning grids: the same number of trials for every distillation method, chosen on val.

A baseline run at one untuned setting against a tuned recipe makes the recipe's gain look larger
than it is. Each method gets 12 settings of its own loss weights (and temperature or exponent),
all at the study's budget; ``kdpipe study --tune`` trains them at seed 0 on data.seed 0 and picks,
per method, the setting with the highest val top-1. The test split is reported beside it, never used.

- kd: T in {1, 2, 4, 8} x (CE, KL) weights in {(1, 1), (0.5, 0.5), (0.1, 0.9)} (Hinton et al., 2015
  use a small CE weight; T=4 is the CIFAR convention);
- fitnet: feature weight in {0.1, 0.3, 1, 3, 10, 30} x CE weight in {1, 0.5};
- srd: LogSum alpha in {2, 4} x feature weight in {1, 2, 4} x (CE, KL) weights in {(1, 1), (0.1, 0.9)}.
"""

from __future__ import annotations

import itertools

from kdpipe.study.cells import Cell

PREFIX = "tune_"
TUNED_METHODS = ("kd", "fitnet", "srd")


def _label(value: float) -> str:
    return f"{value:g}"


def _kd() -> list[Cell]:
    return [
        Cell(
            f"{PREFIX}kd_t{_label(t)}_ce{_label(ce)}_kl{_label(kl)}",
            ("method.name=kd", f"method.kd.temperature={t}", f"method.kd.ce_weight={ce}", f"method.kd.kl_weight={kl}"),
            f"kd at T={t:g}, CE x {ce:g}, KL x {kl:g}",
        )
        for t, (ce, kl) in itertools.product((1.0, 2.0, 4.0, 8.0), ((1.0, 1.0), (0.5, 0.5), (0.1, 0.9)))
    ]


def _fitnet() -> list[Cell]:
    return [
        Cell(
            f"{PREFIX}fitnet_feat{_label(w)}_ce{_label(ce)}",
            ("method.name=fitnet", f"method.fitnet.feat_weight={w}", f"method.fitnet.ce_weight={ce}"),
            f"fitnet, feature x {w:g}, CE x {ce:g}",
        )
        for w, ce in itertools.product((0.1, 0.3, 1.0, 3.0, 10.0, 30.0), (1.0, 0.5))
    ]


def _srd() -> list[Cell]:
    return [
        Cell(
            f"{PREFIX}srd_a{_label(a)}_feat{_label(w)}_ce{_label(ce)}_kl{_label(kl)}",
            (
                "method.name=srd",
                f"method.srd.alpha={a}",
                f"method.srd.feat_weight={w}",
                f"method.srd.ce_weight={ce}",
                f"method.srd.kl_weight={kl}",
            ),
            f"srd, alpha={a:g}, feature x {w:g}, CE x {ce:g}, KL x {kl:g}",
        )
        for a, w, (ce, kl) in itertools.product((2.0, 4.0), (1.0, 2.0, 4.0), ((1.0, 1.0), (0.1, 0.9)))
    ]


def tuning_cells() -> tuple[Cell, ...]:
    """Every method's grid, kd then fitnet then srd, each in its grid order."""
    return (*_kd(), *_fitnet(), *_srd())


def knobs(cell: Cell) -> list[str]:
    """The setting a grid cell tries, as ``-p`` overrides (the method name left out)."""
    return [o for o in cell.overrides if not o.startswith("method.name=")]
