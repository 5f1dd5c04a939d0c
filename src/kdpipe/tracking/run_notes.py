"""Short Markdown descriptions for the MLflow UI: what a step's run did, what a registered version is.

The run page and the model-version page show them above the wall of tags, so each says in a
sentence or two what a reviewer checks first.
"""

from __future__ import annotations

from typing import Any

from kdpipe.tracking import tags


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value) * 100:.2f} %"


def prepare(manifest: dict[str, Any]) -> str:
    splits = ", ".join(f"{k} {v:,}" for k, v in manifest["splits"].items())
    return f"`{manifest['source']}` prepared: {splits}; sha256 `{manifest['sha256'][:16]}`."


def teacher(arch: str, version: str, top1: float) -> str:
    return f"Teacher `{arch}` (`{version}`): test top-1 **{_pct(top1)}**."


def distill(summary: dict[str, Any], run_tags: dict[str, Any], student_arch: str, pipeline_run_id: str) -> str:
    return (
        f"**{summary['method']}**: a `{student_arch}` student from the `{run_tags[tags.TEACHER_ARCH]}` teacher "
        f"(`{run_tags[tags.TEACHER_VERSION]}`), {summary['epochs']} epochs, final val top-1 "
        f"**{_pct(summary['final_val_acc'])}**. Pipeline run `{pipeline_run_id}`."
    )


def validate(
    student: dict[str, Any], teacher: dict[str, Any], champion: dict[str, Any] | None, decision: dict[str, Any]
) -> str:
    against = f"champion {champion['label']} {_pct(champion['top1'])}" if champion else "no champion yet"
    verdict = "**passed**" if decision["passed"] else "**failed**: " + "; ".join(decision["reasons"])
    return (
        f"Test top-1 (reported): student **{_pct(student['top1'])}**, teacher {_pct(teacher['top1'])}, {against}. "
        f"Thresholds on the {decision.get('split', 'gate')} split: {verdict}."
    )


def version(version_tags: dict[str, str], decision: str, reasons: list[str], compared_with: str) -> str:
    """A registered version: what it is, how good, and why it is or is not the champion."""
    top1 = version_tags.get(tags.recorded_metric("top1"))
    return (
        f"`{version_tags.get(tags.STUDENT_ARCH)}` student, **{version_tags.get(tags.METHOD)}** from teacher "
        f"`{version_tags.get(tags.TEACHER_VERSION)}`; test top-1 **{_pct(top1)}**.\n\n"
        f"**{decision}** (compared with {compared_with}): "
        + "; ".join(reasons)
        + f"\n\nPipeline run `{version_tags.get(tags.PIPELINE_RUN_ID)}`."
    )
