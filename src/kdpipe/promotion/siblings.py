"""The deployable siblings of the registered student: ``<name>-onnx`` and ``<name>-onnx-int8``, their aliases
following the student's.

A deployer pulls ``models:/<name>-onnx@champion`` without knowing about PyTorch. Each sibling version is tagged
with the student version it was exported from (``kdpipe.student_version``); the student's aliases are the truth
and the siblings follow them. MLflow has no transaction across registered models, so the registries converge
rather than never differ:

1. a sibling version is registered (no alias) before any alias moves;
2. the student's alias moves;
3. each sibling's alias is set to the version made from the student version that now holds it, or removed when
   that student version has no such sibling (int8 not offered);
4. the sibling champion's ``kdpipe.previous_champion`` names the sibling of the student's previous champion.

Interrupted after 2, a sibling still names the old champion, never one the gate has not passed; the next promote,
rollback or ``kdpipe registry repair`` runs 3-4 first and reports what it had to move.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kdpipe.promotion.records import RepairRecord
from kdpipe.tracking import registry, tags

log = logging.getLogger("kdpipe")

SIBLINGS = {tags.ONNX_MODEL_URI: "onnx", tags.ONNX_INT8_MODEL_URI: "onnx-int8"}
"""The student version's tag naming an export's MLflow model -> the suffix of the sibling registered model."""
FOLLOWED_ALIASES = (registry.CHAMPION, registry.CHALLENGER)


def sibling_name(name: str, suffix: str) -> str:
    """``kdpipe-student`` + ``onnx`` -> ``kdpipe-student-onnx``."""
    return f"{name}-{suffix}"


def of_student(mlflow_client: Any, sibling: str, student_version: str) -> Any | None:
    """The version of ``sibling`` exported from ``student_version`` of the student, if registered."""
    return registry.find_version_by_tag(mlflow_client, sibling, tags.STUDENT_VERSION, str(student_version))


def _exports(mlflow_client: Any, sibling: str) -> dict[str, str]:
    """Every version of ``sibling`` by the student version it was exported from: one registry search."""
    return {
        mv.tags[tags.STUDENT_VERSION]: str(mv.version)
        for mv in mlflow_client.search_model_versions(f"name = '{sibling}'")
        if tags.STUDENT_VERSION in mv.tags
    }


def register(mlflow_client: Any, name: str, student: Any, run_id: str | None) -> dict[str, str]:
    """A version of each sibling for the export URIs the student version ``student`` names in its tags (once: a
    rerun finds it by its ``kdpipe.student_version`` tag); returns {sibling name: its version}. No alias moves."""
    registered = {}
    for tag, suffix in SIBLINGS.items():
        uri = student.tags.get(tag)
        if not uri:
            continue
        sibling = sibling_name(name, suffix)
        mv = of_student(mlflow_client, sibling, str(student.version)) or registry.register_version(
            mlflow_client,
            sibling,
            uri,
            run_id,
            {
                tags.STUDENT_VERSION: str(student.version),
                tags.STUDENT_MODEL: name,
                **{
                    k: student.tags[k] for k in (tags.MODEL_SHA256, tags.DATA_SHA256, tags.CLASSES) if k in student.tags
                },
            },
            description=f"the {suffix} exports of {name}'s students, registered by kdpipe; aliases follow {name}'s",
        )
        registered[sibling] = str(mv.version)
    return registered


@dataclass(frozen=True)
class AliasState:
    """One alias of one sibling: the student version holding it, the sibling version it names now and the one
    it should name (None: none)."""

    sibling: str
    alias: str
    student: Any | None
    current: str | None
    wanted: str | None

    def line(self, name: str) -> str:
        held = "none" if self.student is None else f"v{self.student.version}"
        return f"{self.sibling}@{self.alias}: {_v(self.current)} -> {_v(self.wanted)} ({name}@{self.alias} is {held})"


def _v(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


def states(mlflow_client: Any, name: str) -> list[AliasState]:
    """Every followed alias of every registered sibling, as it is and as the student's aliases say it should be."""
    found = []
    held = {alias: registry.version_by_alias(mlflow_client, name, alias) for alias in FOLLOWED_ALIASES}
    for suffix in SIBLINGS.values():
        sibling = sibling_name(name, suffix)
        if not registry.exists(mlflow_client, sibling):
            continue
        exported = _exports(mlflow_client, sibling)
        for alias, student in held.items():
            current = registry.version_by_alias(mlflow_client, sibling, alias)
            found.append(
                AliasState(
                    sibling,
                    alias,
                    student,
                    None if current is None else str(current.version),
                    None if student is None else exported.get(str(student.version)),
                )
            )
    return found


def disagreements(mlflow_client: Any, name: str) -> tuple[str, ...]:
    """Each sibling alias that does not name the export of the student version holding that alias, as a line;
    changes nothing."""
    return tuple(s.line(name) for s in states(mlflow_client, name) if s.current != s.wanted)


def follow(mlflow_client: Any, name: str) -> tuple[str, ...]:
    """Move every sibling's champion and challenger to the versions exported from the student versions holding
    them (steps 3-4 above); returns one line per alias it had to move or remove, empty when all agreed."""
    moved = []
    for state in states(mlflow_client, name):
        if state.alias == registry.CHAMPION and state.wanted is not None:
            previous = state.student.tags.get(tags.PREVIOUS_CHAMPION, "")
            back = of_student(mlflow_client, state.sibling, previous) if previous else None
            mlflow_client.set_model_version_tag(
                state.sibling, state.wanted, tags.PREVIOUS_CHAMPION, "" if back is None else str(back.version)
            )
        if state.current == state.wanted:
            continue
        if state.wanted is None:
            mlflow_client.delete_registered_model_alias(state.sibling, state.alias)
        else:
            mlflow_client.set_registered_model_alias(state.sibling, state.alias, state.wanted)
        moved.append(state.line(name))
    return tuple(moved)


def repair_note(mlflow_client: Any, name: str) -> str:
    """Complete what an interrupted promote or rollback left: the siblings' aliases follow the student's again
    (:func:`follow`); returns a sentence for the record, empty when they agreed."""
    moved = follow(mlflow_client, name)
    if not moved:
        return ""
    log.warning("registry: the ONNX siblings disagreed with %s and were moved: %s", name, "; ".join(moved))
    return f" (repaired first, an earlier move had been interrupted: {'; '.join(moved)})"


def repair(
    mlflow_client: Any, name: str, *, dry_run: bool = False, lock_options: dict[str, float] | None = None
) -> RepairRecord:
    """Make the ONNX siblings' aliases follow ``name``'s again (:func:`follow`), under the
    promotion lock; a dry run only lists what disagrees."""
    if dry_run:
        found = disagreements(mlflow_client, name)
        verdict = "would move: " + "; ".join(found) if found else "nothing to repair"
        return RepairRecord(found, True, f"dry run: {name} and its ONNX siblings: {verdict}")
    with registry.promotion_lock(mlflow_client, name, **(lock_options or {})):
        moved = follow(mlflow_client, name)
    verdict = "moved " + "; ".join(moved) if moved else "their aliases already agree; nothing to repair"
    return RepairRecord(moved, False, f"{name} and its ONNX siblings: {verdict}")
