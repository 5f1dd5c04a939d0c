"""The study's phases: what each one trains, on which seeds and transfer sets, and where it writes.

- ``main`` (``kdpipe study``): every cell of the catalogue on seeds 0 1 2 of data.seed's transfer set;
- ``tune`` (``--tune``): scratch's grid (the shared optimiser settings), then every other method's grid with
  scratch's choice, each extended past its ends where a choice lands there, at seeds 0 1 on data.seed's
  transfer set, chosen on val (:mod:`kdpipe.study.tune_rounds`);
- ``confirm`` (``--confirm``): the baselines and the recipe on transfer sets that no choice saw
  (data seeds 1 2) x seeds 3-7, compared by paired intervals;
- ``gap`` (``--gap``): kd and srd from a small, the study's and a large teacher (cnn16_fc256,
  cnn32_fc512, cnn64_fc1024), on data seed 1 x seeds 3-5;
- ``budget`` (``--budget``): scratch, kd and srd over transfer sets of 2k to 55k images at equal steps,
  on data seed 1 x seeds 3-5.

confirm, gap and budget are the tuning study's later phases. They join it: they log into its MLflow parent
run (they take its study id), and they refuse to start while params.yaml's method settings are not
the ones it chose, so the evidence is about the tuned baselines it claims to be about.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kdpipe.config import Params
from kdpipe.infra.errors import ConfigError
from kdpipe.study.budget import budget_cells
from kdpipe.study.cells import gap_cells
from kdpipe.study.fanout import STUDY_FILE
from kdpipe.study.grids import GRIDS
from kdpipe.study.plan import MAIN_PHASE
from kdpipe.study.tuning import TUNING_FILE

log = logging.getLogger("kdpipe")

CONFIRM_CELLS = ("scratch", "kd", "fitnet", "srd")
"""The baselines and the recipe; the ablations are the main study's (one seed list per study keeps the pairs whole)."""
GAP_CELLS = ("kd", "srd", *(c.name for c in gap_cells()))
LARGE_TEACHER = "cnn64_fc1024"


@dataclass(frozen=True)
class Phase:
    name: str
    directory: str
    seeds: tuple[int, ...]
    data_seeds: tuple[int, ...] | None
    """The transfer sets (``train.subset_seed``); None: the one ``data.seed`` draws."""
    cells: tuple[str, ...] | None
    """None: every cell of the catalogue."""
    gap: bool
    joins_tuning: bool = False
    large_teacher: str | None = None
    """The capacity gap's large teacher when ``--large-teacher`` is not given; None: the study's own."""

    def default_join(self, study_dir: Path) -> Path | None:
        """The tuning study a later phase joins: ``study-tune`` beside its own directory."""
        return study_dir.parent / Path(TUNE.directory).name if self.joins_tuning else None


MAIN = Phase(MAIN_PHASE, "artifacts/study", (0, 1, 2), None, None, gap=True)
TUNE = Phase("tune", "artifacts/study-tune", (0, 1), None, None, gap=False)
"""Its cells are built round by round (:mod:`kdpipe.study.tune_rounds`), not listed."""
CONFIRM = Phase(
    "confirm", "artifacts/study-confirm", (3, 4, 5, 6, 7), (1, 2), CONFIRM_CELLS, gap=False, joins_tuning=True
)
GAP = Phase(
    "gap", "artifacts/study-gap", (3, 4, 5), (1,), GAP_CELLS, gap=True, joins_tuning=True, large_teacher=LARGE_TEACHER
)
BUDGET = Phase(
    "budget",
    "artifacts/study-budget",
    (3, 4, 5),
    (1,),
    tuple(c.name for c in budget_cells()),
    gap=False,
    joins_tuning=True,
)
FLAGS = {"tune": TUNE, "confirm": CONFIRM, "gap": GAP, "budget": BUDGET}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tune",
        action="store_true",
        help=f"tune on val: scratch's learning rate and weight decay first, then {len(GRIDS) - 1} methods' grids "
        f"with them ({len(GRIDS['kd'].cells())} settings each, extended past an end where the choice lands), at "
        "seeds 0 1; writes tuning.json",
    )
    p.add_argument(
        "--confirm",
        action="store_true",
        help="confirm on data used for no choice: scratch, kd, fitnet "
        "and srd on fresh transfer sets (data seeds 1 2) x seeds 3-7, paired intervals",
    )
    p.add_argument(
        "--gap",
        action="store_true",
        help=f"the capacity gap: kd and srd from the small, the study's and "
        f"the large teacher (default {LARGE_TEACHER}), data seed 1 x seeds 3-5",
    )
    p.add_argument(
        "--budget",
        action="store_true",
        help="the data-budget curve: scratch, kd and srd on transfer sets "
        "of 2k, 5k, 10k, 20k and all 55k images at equal steps, data seed 1 x seeds 3-5",
    )
    p.add_argument(
        "--join",
        metavar="DIR",
        help="log into the MLflow parent run of the study in DIR and check the "
        "method settings against its tuning.json (default with --confirm, --gap and --budget: the study-tune "
        "directory beside --dir, when it holds a study)",
    )


def phase_of(args: argparse.Namespace) -> Phase:
    named = [FLAGS[f] for f in FLAGS if getattr(args, f)]
    if len(named) > 1:
        raise ConfigError(f"{' and '.join('--' + p.name for p in named)} are separate phases of the study; give one")
    if named and args.cells:
        raise ConfigError(f"--{named[0].name} names its own cells; leave out --cells")
    if GAP in named and args.no_gap:
        raise ConfigError("--gap is the capacity gap; leave out --no-gap")
    return named[0] if named else MAIN


def selection(args: argparse.Namespace) -> tuple[list[str] | None, list[int], bool, list[int] | None]:
    """The cells, seeds, capacity gap and data seeds a command line asks for."""
    phase = phase_of(args)
    gap = phase.gap and not args.no_gap  # --gap refuses --no-gap (phase_of)
    cells = list(phase.cells) if phase.cells else args.cells
    data_seeds = args.data_seeds or (list(phase.data_seeds) if phase.data_seeds else None)
    return cells, list(args.seeds or phase.seeds), gap, data_seeds


def large_teacher(args: argparse.Namespace) -> str | None:
    return args.large_teacher or phase_of(args).large_teacher


def directory(args: argparse.Namespace) -> Path:
    return Path(args.dir or phase_of(args).directory)


def joined(args: argparse.Namespace) -> Path | None:
    """The study this one joins: ``--join``, else a later phase's tuning study when there is one."""
    if args.join:
        if not (Path(args.join) / STUDY_FILE).exists():
            raise ConfigError(f"--join: {args.join} holds no study ({STUDY_FILE} missing)")
        return Path(args.join)
    default = phase_of(args).default_join(directory(args))
    if default is None:
        return None
    if not (default / STUDY_FILE).exists():
        log.info(
            "study: no tuning study at %s; this study is its own MLflow parent and its method settings are "
            "params.yaml's as they stand",
            default,
        )
        return None
    return default


def _value(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def check_tuned(params: Params, tuning_dir: Path) -> None:
    """Refuse a later phase whose method settings differ from those the tuning study chose on val."""
    path = tuning_dir / TUNING_FILE
    if not path.exists():
        return
    choices = json.loads(path.read_text())["choices"]
    tree = params.to_dict()
    wrong = []
    for method, choice in choices.items():
        for override in choice["overrides"]:
            key, value = override.split("=", 1)
            have, tuned = _value(tree, key), yaml.safe_load(value)
            if have != tuned:
                wrong.append(f"{key} is {have!r}, tuned {tuned!r} ({method})")
    if wrong:
        raise ConfigError(
            f"the method settings are not those the tuning study in {tuning_dir} chose on val: "
            f"{'; '.join(wrong)}; set them in params.yaml (its choices are in {path})"
        )
