"""What a study runs: its cells, its seeds and the teacher of each role, checked once.

``kdpipe study`` walks the plan in worker processes; the Kubeflow study pipeline is compiled from
it (one teacher task per role, one distill task per cell and seed). Both read the same plan, so
both run the same runs and write the same report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kdpipe.config import Params
from kdpipe.infra.errors import ConfigError
from kdpipe.models import is_known_model
from kdpipe.study.budget import budget_cells
from kdpipe.study.cells import GAP_ROLES, Cell, select_cells

log = logging.getLogger("kdpipe")

SMALL_TEACHER = "cnn16_fc256"
MAIN = "main"
MAIN_PHASE = "main"
"""The default study's phase (:mod:`kdpipe.study.phases`); its MLflow files sit at the parent's root."""
TUNE_PHASE = "tune"
"""The tuning's phase: the only one that keeps a diverged run as a result (:mod:`kdpipe.study.diverged`)."""


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...]
    archs: dict[str, str]
    """The teacher architecture of each role: ``main`` (params.yaml's), ``small`` and ``large``."""
    data_seeds: tuple[int | None, ...] = (None,)
    """The transfer sets (``train.subset_seed``) each seed runs on; None is ``data.seed``'s."""
    phase: str = MAIN_PHASE
    """Which of the study's phases this is (:mod:`kdpipe.study.phases`): MLflow tags every cell with it."""
    paired: bool = False
    """True: the i-th seed runs on the i-th transfer set only, so no transfer set or seed is in two pairs and the
    pairs are independent (the confirmation's); False: every seed on every transfer set."""
    excluding: int | None = None
    """``train.subset_excludes`` of every run: the seed of the tuning set its transfer sets avoid; None: none."""
    corrected: bool = False
    """Its report gives corrected verdicts over independent pairs (:mod:`kdpipe.study.confirmed`) in place of
    paired t-intervals: the confirmation and the full-data phase."""

    def replicates(self) -> list[tuple[int | None, int]]:
        """The (transfer set, seed) pairs each cell runs, transfer set by transfer set."""
        if self.paired:
            return list(zip(self.data_seeds, self.seeds, strict=True))
        return [(d, s) for d in self.data_seeds for s in self.seeds]

    @property
    def roles(self) -> list[str]:
        """The teachers the cells use: the study's own first, then the gap teachers in use."""
        used = {c.gap_role or MAIN for c in self.cells}
        return [MAIN, *(r for r in GAP_ROLES if r in used)]

    def runs(self, role: str) -> list[dict[str, Any]]:
        """The (cell, data seed, seed) runs taught by ``role``'s teacher, transfer set by transfer set, seed by seed."""
        return [
            {"cell": c.name, "seed": s, **({} if d is None else {"data_seed": d})}
            for d, s in self.replicates()
            for c in self.cells
            if (c.gap_role or MAIN) == role
        ]  # kfp takes no nulls

    def cell(self, name: str) -> Cell:
        return next(c for c in self.cells if c.name == name)

    def as_dict(self) -> dict[str, Any]:
        fresh = {"data_seeds": list(self.data_seeds)} if self.data_seeds != (None,) else {}  # kfp takes no nulls
        excluding = {} if self.excluding is None else {"excluding": self.excluding}
        return {
            "cells": [c.name for c in self.cells],
            "seeds": list(self.seeds),
            "archs": dict(self.archs),
            "phase": self.phase,
            **fresh,
            **({"paired": True} if self.paired else {}),
            **({"corrected": True} if self.corrected else {}),
            **excluding,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Plan:
        """The plan a pipeline was compiled with (already checked then)."""
        cells = select_cells(list(raw["cells"]), by_name_only=phase_cells())
        data_seeds = tuple(int(d) for d in raw["data_seeds"]) if "data_seeds" in raw else (None,)
        return cls(
            tuple(cells),
            tuple(int(s) for s in raw["seeds"]),
            dict(raw["archs"]),
            data_seeds,
            str(raw.get("phase", MAIN_PHASE)),
            bool(raw.get("paired", False)),
            None if raw.get("excluding") is None else int(raw["excluding"]),
            bool(raw.get("corrected", False)),
        )


def phase_cells() -> tuple[Cell, ...]:
    """The cells that run only when named: the data-budget curve. (The tuning grids are built round by round by
    :mod:`kdpipe.study.tune_rounds`, which hands them to :func:`make_plan` as ``extra``.)"""
    return budget_cells()


def _drop_duplicate_gap(cells: list[Cell], archs: dict[str, str]) -> list[Cell]:
    """A gap teacher that is the study's teacher already: its kd and srd are the main cells."""
    kept = []
    for c in cells:
        if c.gap_role and archs[c.gap_role] == archs[MAIN]:
            log.info(
                "study: %s skipped: the %s teacher %s is the study's teacher (see kd, srd)",
                c.name,
                c.gap_role,
                archs[MAIN],
            )
            continue
        kept.append(c)
    return kept


def make_plan(
    base: Params,
    cells: list[str] | None,
    seeds: list[int],
    *,
    gap: bool = True,
    small_teacher: str = SMALL_TEACHER,
    large_teacher: str | None = None,
    data_seeds: list[int] | None = None,
    phase: str = MAIN_PHASE,
    extra: tuple[Cell, ...] = (),
    paired: bool = False,
    excluding: int | None = None,
    corrected: bool = False,
) -> Plan:
    """The named cells (default: all) under ``seeds`` on each of ``data_seeds``' transfer sets (default: the one
    ``data.seed`` draws), names looked up in the catalogue and in ``extra``; a bad seed list or teacher is a
    one-line error."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: give distinct seeds, got {seeds}")
    if data_seeds is not None and (not data_seeds or len(set(data_seeds)) != len(data_seeds)):
        raise ConfigError(f"--data-seeds: give distinct seeds, got {data_seeds}")
    if excluding is not None and base.train.subset is None:
        raise ConfigError(
            "this phase draws transfer sets that share no image with the tuning set, so it needs train.subset "
            "(their size); with null every run trains on the whole split"
        )
    if paired and (data_seeds is None or len(data_seeds) != len(seeds)):
        raise ConfigError(
            f"--seeds and --data-seeds: this phase pairs them one to one (independent pairs), so give as many of "
            f"each; got {len(seeds)} seeds and {len(data_seeds or [])} data seeds"
        )
    archs = {MAIN: base.teacher.arch, "small": small_teacher, "large": large_teacher or base.teacher.arch}
    for role in GAP_ROLES:
        if not is_known_model(archs[role]):
            raise ConfigError(f"--{role}-teacher: unknown model {archs[role]!r}")
    chosen = select_cells(cells, gap, by_name_only=(*phase_cells(), *extra))
    cells_kept = tuple(_drop_duplicate_gap(chosen, archs))
    return Plan(cells_kept, tuple(seeds), archs, tuple(data_seeds or (None,)), phase, paired, excluding, corrected)
