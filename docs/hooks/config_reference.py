"""mkdocs hook: the configuration reference, generated at build time from ``kdpipe.config.Params``.

The page ``configuration/reference.md`` holds only a marker; this hook replaces it with one table per
section of params.yaml: every key's path (the params.yaml spelling, aliases included), type, default
and the ``Field(description=...)`` written beside it in the schema. Names checked against one of kdpipe's
tables (models, methods, projectors, ...) list that table's choices, read from the error an unknown name
gets. Nothing is written by hand, so the page cannot drift from the schema.
"""

from __future__ import annotations

import html
import json
import re
import types
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

MARKER = "<!-- kdpipe:config-reference -->"
_PROBE = "\x00not-a-name"  # a value no table holds, to read a named field's choices from its error


class Entry(NamedTuple):
    """One leaf key of params.yaml."""

    key: str
    type: str
    default: str
    description: str


class Section(NamedTuple):
    """One section of params.yaml (``data``, ``teacher.train``, ``validate.operational[]``, ...) and its leaves."""

    key: str
    doc: str
    entries: tuple[Entry, ...]


def _params() -> type[BaseModel]:
    from kdpipe.config import Params

    return Params


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _item_section(annotation: Any) -> type[BaseModel] | None:
    """The model of a list of sections (``tuple[OperationalSetConfig, ...]``), else None."""
    if get_origin(annotation) in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        if len(args) == 1 and _is_section(_strip(args[0])):
            return _strip(args[0])
    return None


def _type_name(annotation: Any) -> str:
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        choices = (a if isinstance(a, str) else json.dumps(a) for a in get_args(annotation))
        return "one of " + ", ".join(f"`{choice}`" for choice in choices)
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        named = " or ".join(_type_name(a) for a in args if a is not type(None))
        return f"{named} or null" if type(None) in args else named
    if origin in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        item = _strip(args[0]) if args else Any
        return f"list of `{item.__name__}` (below)" if _is_section(item) else f"list of {_type_name(item)}"
    if origin is dict:
        key, value = get_args(annotation)
        return f"mapping of {_type_name(key)} to {_type_name(value)}"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    for item in metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                out.append(f"{sign} {getattr(item, attr)}")
        if getattr(item, "min_length", None) is not None:
            out.append(f"length ≥ {item.min_length}")
        if getattr(item, "pattern", None) is not None:
            out.append(f"matches `{item.pattern}`")
    return out


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def _markdown_text(text: str) -> str:
    """Plain text for a table cell: HTML and pipes escaped outside code spans, line breaks joined."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = html.escape(parts[i], quote=False).replace("|", "&#124;")
    return "`".join(parts)


def _choices(path: tuple[str, ...]) -> str | None:
    """The choices of a name checked against one of kdpipe's tables, as its unknown-name error lists them."""
    raw: dict[str, Any] = {}
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = _PROBE
    try:
        _params().model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            match = re.search(r"choices: (.+)$", str(error.get("msg", "")))
            if match:
                return ", ".join(f"`{name.strip()}`" for name in match.group(1).split(","))
    return None


def _walk(model: type[BaseModel], instance: BaseModel | None, path: tuple[str, ...], out: list[Section]) -> None:
    entries: list[Entry] = []
    later: list[tuple[type[BaseModel], BaseModel | None, tuple[str, ...]]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = getattr(instance, name) if instance is not None else field.get_default(call_default_factory=True)
        annotation = _strip(field.annotation)
        if _is_section(annotation):
            later.append((annotation, value, (*path, key)))
            continue
        type_name = ", ".join([_type_name(annotation), *_constraints(field.metadata)])
        if annotation is str and "[]" not in "".join(path):
            choices = _choices((*path, key))
            if choices:
                type_name = f"name: one of {choices}"
        entries.append(
            Entry(
                key=".".join((*path, key)),
                type=type_name,
                default=_default(value),
                description=_markdown_text(field.description or ""),
            )
        )
        item = _item_section(annotation)
        if item is not None:
            later.append((item, None, (*path, f"{key}[]")))
    doc = " ".join((model.__doc__ or "").split())
    out.append(Section(key=".".join(path), doc=doc, entries=tuple(entries)))
    for sub_model, sub_instance, sub_path in later:
        _walk(sub_model, sub_instance, sub_path, out)


def reference_sections() -> list[Section]:
    """Every section of ``Params`` in params.yaml order, nested sections after their parent's own keys."""
    params = _params()
    sections: list[Section] = []
    for name, field in params.model_fields.items():
        annotation = _strip(field.annotation)
        _walk(annotation, field.get_default(call_default_factory=True), (field.alias or name,), sections)
    return sections


def reference_markdown() -> str:
    """The reference as Markdown: one heading and table per section."""
    lines: list[str] = []
    for section in reference_sections():
        if not section.entries and not section.doc:
            continue
        level = "##" if "." not in section.key else "###"
        lines += [f"{level} `{section.key}`", ""]
        if section.key.endswith("[]"):
            lines += [f"Each item of the list `{section.key[:-2]}` has these keys.", ""]
        if section.doc:
            lines += [_markdown_text(section.doc), ""]
        if section.entries:
            lines += ["| key | type | default | description |", "|---|---|---|---|"]
            lines += [f"| `{e.key}` | {e.type} | {e.default} | {e.description} |" for e in section.entries]
            lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs event: fill the marker of the reference page."""
    if MARKER in markdown:
        return markdown.replace(MARKER, reference_markdown())
    return markdown
