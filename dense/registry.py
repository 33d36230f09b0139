"""Name → class registries for tasks and datasets, filled from entry points.

Every plug-in, built-in or third-party, is declared as an entry point in the group
``dense.tasks`` or ``dense.datasets`` (``name = "module:Class"``); the entry points are read the
first time a registry is used, so the engine never names a plug-in. ``register`` adds one in
process (tests, notebooks).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from dense.errors import DenseError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to plug-in classes."""

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self._group = entry_point_group
        self._items: dict[str, T] = {}
        self._broken: dict[str, str] = {}  # name → why its entry point did not load
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@TASKS.register("segmentation")``. Re-registering a name replaces it."""

        def decorator(item: T) -> T:
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        self._load()
        if name in self._broken:
            raise DenseError(self._broken[name])
        if not self._items:
            raise DenseError(
                f"unknown {self.kind} '{name}': no {self.kind} is registered — is the project "
                "installed (`make venv`, or `pip install -e .`)? Plug-ins are found through "
                f"the entry-point group {self._group}"
            )
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            known = ", ".join(sorted(self._items))
            raise DenseError(f"unknown {self.kind} '{name}' (registered: {known}){hint}")
        return self._items[name]

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(sorted(self._items.items()))

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for entry in metadata.entry_points(group=self._group):
            if entry.name in self._items:
                continue  # registered in process: that one wins
            try:
                self._items[entry.name] = entry.load()
            except Exception as error:  # a broken plug-in fails when used, not the others
                self._broken[entry.name] = (
                    f"cannot load {self.kind} plug-in '{entry.value}': {error}"
                )


TASKS: Registry = Registry("task", "dense.tasks")
DATASETS: Registry = Registry("dataset", "dense.datasets")
