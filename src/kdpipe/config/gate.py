"""``gate:``: where and by how much a challenger must beat the champion to be promoted."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdpipe.config.section import Section


class GateConfig(Section):
    split: Literal["val", "test"] = Field(
        "val",
        description="where the thresholds, challenger and champion are decided: val (held out from training, "
        "never used to pick a model); the test split is measured and reported, and decides only if set here",
    )
    min_improvement: float = Field(0.0, ge=0, le=1, description="top-1 points over the champion, as a fraction")
    significance: float | None = Field(None, gt=0, lt=1, description="McNemar p-value threshold, null to skip")
    max_robustness_drop: float | None = Field(
        None,
        ge=0,
        le=1,
        description="how much of the champion's mean corrupted top-1 a challenger may lose, even "
        "when it wins on clean data; null: not checked",
    )
    max_class_drop: float | None = Field(
        None, ge=0, le=1, description="how far any class's recall may fall below the champion's; null: not checked"
    )
    champion_on_new_data: Literal["rescore", "refuse"] = Field(
        "rescore",
        description="when the data changed since the champion was validated, it is re-measured on today's gate "
        "split, which an unchanged stable split (the same fingerprint) proves free of the images it trained on; where "
        "that is not proven (a seeded split, a champion without a fingerprint, a changed one), rescore compares anyway "
        "(a bias that can only favour the champion) and says so, refuse does not compare; a changed class set is never "
        "compared",
    )
