"""The study's cells: the baselines, the recipe and its ablations, and the capacity-gap sweep.

A cell is a named list of ``-p`` style overrides on top of params.yaml, so it is validated by the
same schema as any command line and anyone can rerun one cell by hand with ``kdpipe distill``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdpipe.infra.errors import ConfigError


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: tuple[str, ...]
    what: str
    gap_role: str | None = None
    """``small`` or ``large`` for a capacity-gap cell, whose teacher differs from the study's."""

    @property
    def method(self) -> str:
        return next(o.split("=", 1)[1] for o in self.overrides if o.startswith("method.name="))


def _srd(name: str, override: str | None, what: str) -> Cell:
    return Cell(name, ("method.name=srd", *([override] if override else [])), what)


MAIN_CELLS: tuple[Cell, ...] = (
    Cell("scratch", ("method.name=scratch",), "cross-entropy only, no teacher"),
    Cell("kd", ("method.name=kd",), "Hinton KD: KL at params.yaml's T + CE"),
    Cell("fitnet", ("method.name=fitnet",), "projector + MSE on pooled features + CE"),
    Cell("dkd", ("method.name=dkd",), "decoupled KD: target and non-target KL weighted apart + CE"),
    Cell("lskd", ("method.name=lskd",), "KD on z-scored logits + CE"),
    Cell("dist", ("method.name=dist",), "DIST: Pearson relations over classes and over samples + CE"),
    Cell("vkd", ("method.name=vkd",), "VkD: orthogonal projector, layer-normed teacher, smooth L1 + KL + CE"),
    _srd("srd", None, "the recipe: linear projector, BN, LogSum alpha=4, KL T=1, CE"),
    _srd("srd_norm_none", "method.srd.norm=none", "no normalisation of the features"),
    _srd("srd_norm_l2", "method.srd.norm=l2", "L2-normalised rows instead of BN"),
    _srd("srd_mse", "method.srd.distance=mse", "MSE instead of LogSum"),
    _srd("srd_alpha2", "method.srd.alpha=2.0", "LogSum with alpha=2"),
    _srd("srd_alpha8", "method.srd.alpha=8.0", "LogSum with alpha=8"),
    _srd("srd_no_kl", "method.srd.kl_weight=0.0", "no KL term: feature term + CE"),
    _srd("srd_no_feat", "method.srd.feat_weight=0.0", "no feature term: CE + KL at T=1 only"),
    _srd("srd_frozen_proj", "method.srd.train_projector=false", "random projector, frozen"),
)

BASELINES = ("kd", "fitnet", "dkd", "lskd", "dist", "vkd", "scratch")
"""The cells srd is compared with, where a study ran them, each at its default (the tuning's choice on val)."""

ABLATIONS = ("srd_norm_none", "srd_no_feat", "srd_mse")
"""The recipe without its normalisation, without its feature term, with MSE for LogSum: the parts it is made of.
(No projector needs equal feature sizes, which the study's student and teacher do not have.)"""

GAP_METHODS = ("kd", "srd")
GAP_ROLES = ("small", "large")


def gap_cells() -> tuple[Cell, ...]:
    """kd and srd from a small and from a large teacher; the teacher arch is set per study."""
    return tuple(
        Cell(f"gap_{role}_{method}", (f"method.name={method}",), f"{method} from the {role} teacher", gap_role=role)
        for role in GAP_ROLES
        for method in GAP_METHODS
    )


def all_cells(with_gap: bool = True) -> tuple[Cell, ...]:
    return MAIN_CELLS + (gap_cells() if with_gap else ())


def select_cells(names: list[str] | None, with_gap: bool = True, by_name_only: tuple[Cell, ...] = ()) -> list[Cell]:
    """The named cells in catalogue order, or all of them; an unknown name is a one-line error. Cells in
    ``by_name_only`` (the tuning grids, the data-budget curve) run only when named."""
    if not names:
        return list(all_cells(with_gap))
    catalogue = all_cells(with_gap) + by_name_only
    known = {c.name for c in catalogue}
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = sorted(c.name for c in all_cells(with_gap))
        grids = f" and {len(by_name_only)} cells run only when named (kdpipe study --budget)" if by_name_only else ""
        raise ConfigError(f"--cells: unknown cell(s) {', '.join(unknown)}; available: {', '.join(listed)}{grids}")
    return [c for c in catalogue if c.name in names]
