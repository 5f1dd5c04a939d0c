"""One name -> factory table for every choice params.yaml spells by name: models, methods, projectors, norms, distances.

Like timm's ``register_model`` registry, each table is filled next to its implementations and is the only list
of valid names: config validation and error messages read it, so a new entry cannot be forgotten in one of them,
and an unknown name always fails the same way, on one line that lists the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from kdpipe.infra.errors import UnknownNameError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Factories(Generic[T]):
    """Name -> factory of ``T``; ``kind`` ("norm", "model", ...) names the table in errors."""

    def __init__(
        self, kind: str, factories: Mapping[str, Callable[..., T]] | None = None, *, patterns: Sequence[str] = ()
    ) -> None:
        """``patterns`` are accepted spellings handled outside the table (``torchvision:<name>``), listed in errors."""
        self.kind = kind
        self.patterns = tuple(patterns)
        self._factories: dict[str, Callable[..., T]] = {}
        for name, factory in (factories or {}).items():
            self.register(name)(factory)

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that adds a factory under ``name``; a name registered twice is a bug, not an override."""

        def add(factory: F) -> F:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return add

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def unknown(self, name: str) -> UnknownNameError:
        return UnknownNameError(f"unknown {self.kind} {name!r}; choices: {', '.join([*self.names(), *self.patterns])}")

    def check(self, name: str) -> str:
        """``name`` itself when known, for validators; UnknownNameError otherwise."""
        if name not in self._factories:
            raise self.unknown(name)
        return name

    def get(self, name: str) -> Callable[..., T]:
        return self._factories[self.check(name)]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def without(self, *names: str) -> Factories[T]:
        """A copy lacking ``names``, for a setting that accepts only part of a table."""
        for name in names:
            self.check(name)
        kept = {name: factory for name, factory in self._factories.items() if name not in names}
        return Factories(self.kind, kept, patterns=self.patterns)
