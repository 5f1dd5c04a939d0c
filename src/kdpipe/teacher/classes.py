"""Which of the teacher's outputs is which class: matched with the data's classes by name, never by position.

A teacher trained elsewhere lists its classes in its own order (``teacher.classes``: a list, or a file with
one class a line; else what the model carries: a kdpipe file's record, an MLflow model's ``classes`` tag or
``classes.txt``). The data's classes must all be among them and no other: a class missing on either side is
an error that names it; a different order becomes a remap of the logits (:func:`order`).
"""

from __future__ import annotations

from pathlib import Path

from kdpipe.infra.errors import ConfigError, TeacherMismatchError

CLASSES_FILE = "classes.txt"


def read_file(path: Path, what: str) -> list[str]:
    """One class a line, blank lines and surrounding spaces ignored."""
    if not path.is_file():
        raise ConfigError(f"{what}: {path} not found (a file with one class a line)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def declared(setting: list[str] | str | None, recorded: list[str] | None, source: str) -> list[str]:
    """The teacher's classes in its output order: ``teacher.classes`` when set, else those recorded with it."""
    if isinstance(setting, str):
        return read_file(Path(setting), "teacher.classes")
    if setting is not None:
        return list(setting)
    if recorded is None:
        raise TeacherMismatchError(
            f"teacher.source {source}: the teacher records no class names; list them in its output order in "
            "teacher.classes (a list, or a file with one class a line)"
        )
    return list(recorded)


def order(teacher: list[str], data: list[str], source: str) -> list[int] | None:
    """The teacher's output index of each data class (None when the orders agree); refuses classes that differ."""
    if teacher == data:
        return None
    missing = [c for c in data if c not in teacher]
    extra = [c for c in teacher if c not in data]
    twice = sorted({c for c in teacher if teacher.count(c) > 1})
    if missing or extra or twice:
        what = "; ".join(
            part
            for part in (
                f"the data's {missing} are not among them" if missing else "",
                f"{extra} are not the data's" if extra else "",
                f"{twice} appear twice" if twice else "",
            )
            if part
        )
        raise TeacherMismatchError(
            f"teacher.source {source}: the teacher predicts {len(teacher)} classes, the data has {len(data)}: {what}"
        )
    return [teacher.index(c) for c in data]
