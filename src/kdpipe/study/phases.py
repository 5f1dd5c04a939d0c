"""The study's phases: what each one trains, on which seeds and transfer sets, and where it writes.

- ``main`` (``kdpipe study``): every cell of the catalogue on seeds 0 1 2 of data.seed's transfer set;
- ``tune`` (``--tune``): scratch's grid (the shared optimiser settings), then every other method's grid with
  scratch's choice, each extended past its ends where a choice lands there, at seeds 0 1 on data.seed's
  transfer set, chosen on val (:mod:`kdpipe.study.tune_rounds`);
- ``confirm`` (``--confirm``): every tuned baseline, the recipe and its ablations on 8 independent pairs of
  a transfer set that shares no image with the tuning set (data seeds 1-8) and a seed (3-10), compared by
  Holm-corrected intervals that count the test images' sampling (:mod:`kdpipe.study.corrected`);
- ``gap`` (``--gap``): kd and srd from a small, the study's and a large teacher (cnn16_fc256,
  cnn32_fc512, cnn64_fc1024), on data seed 1 x seeds 3-5;
- ``budget`` (``--budget``): scratch, kd and srd over transfer sets of 2k to 55k images at equal steps,
  on data seed 1 x seeds 3-5;
- ``full`` (``--full``): srd against the best tuned baseline (by the tuning study's val) on the whole train
  split at the full epoch budget, seeds 3-7, with the confirmation's corrected verdicts. The whole split holds
  the tuning images: the question is the regime, not data no choice saw.

confirm, gap, budget and full are the tuning study's later phases. They join it: they log into its MLflow parent
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
from kdpipe.study.cells import ABLATIONS, BASELINES, gap_cells
from kdpipe.study.fanout import STUDY_FILE
from kdpipe.study.grids import GRIDS
from kdpipe.study.plan import MAIN_PHASE, TUNE_PHASE
from kdpipe.study.tuning import TUNING_FILE

log = logging.getLogger("kdpipe")

CONFIRM_CELLS = (*BASELINES, "srd", *ABLATIONS)
"""Every tuned baseline, the recipe and the ablations that test its parts at the tuned weights."""
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
    paired: bool = False
    """Seeds and data seeds paired one to one (:attr:`kdpipe.study.plan.Plan.paired`)."""
    avoids_tuning: bool = False
    """Its transfer sets share no image with the tuning set (``train.subset_excludes`` = ``data.seed``)."""
    corrected: bool = False
    """Its report gives corrected verdicts (:attr:`kdpipe.study.plan.Plan.corrected`)."""

    def default_join(self, study_dir: Path) -> Path | None:
        """The tuning study a later phase joins: ``study-tune`` beside its own directory."""
        return study_dir.parent / Path(TUNE.directory).name if self.joins_tuning else None


MAIN = Phase(MAIN_PHASE, "artifacts/study", (0, 1, 2), None, None, gap=True)
TUNE = Phase(TUNE_PHASE, "artifacts/study-tune", (0, 1), None, None, gap=False)
"""Its cells are built round by round (:mod:`kdpipe.study.tune_rounds`), not listed."""
CONFIRM = Phase(
    "confirm",
    "artifacts/study-confirm",
    (3, 4, 5, 6, 7, 8, 9, 10),
    (1, 2, 3, 4, 5, 6, 7, 8),
    CONFIRM_CELLS,
    gap=False,
    joins_tuning=True,
    paired=True,
    avoids_tuning=True,
    corrected=True,
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
FULL = Phase("full", "artifacts/study-full", (3, 4, 5, 6, 7), None, None, gap=False, joins_tuning=True, corrected=True)
"""Its two cells are srd and the best tuned baseline, read from the tuning study it joins (:func:`full_cells`)."""
FLAGS = {"tune": TUNE, "confirm": CONFIRM, "gap": GAP, "budget": BUDGET, "full": FULL}


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
        help=f"confirm on data used for no choice: the {len(BASELINES)} baselines, srd and its ablations on 8 "
        "independent pairs of a transfer set without tuning images (data seeds 1-8) and a seed (3-10); "
        "Holm-corrected bootstrap intervals",
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
        "--full",
        action="store_true",
        help="the full-data regime: srd against the best tuned baseline on the whole train split at the "
        "full epoch budget, seeds 3-7, corrected verdicts (needs the tuning study)",
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


def full_cells(tuning_dir: Path | None) -> list[str]:
    """srd and the baseline with the highest val top-1 in the tuning study's choices."""
    path = None if tuning_dir is None else tuning_dir / TUNING_FILE
    if path is None or not path.exists():
        raise ConfigError(
            "--full compares srd with the best tuned baseline, chosen on the tuning study's val: run "
            "kdpipe study --tune first (its directory beside --dir, or --join DIR)"
        )
    choices = json.loads(path.read_text())["choices"]
    tuned = {m: c["val_top1"] for m, c in choices.items() if m in BASELINES}
    if not tuned:
        raise ConfigError(f"--full: the tuning study in {tuning_dir} chose no baseline ({path})")
    return ["srd", max(tuned, key=tuned.__getitem__)]


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
