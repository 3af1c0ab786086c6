"""`Registry`: the small registry of named pieces (selection policies, pair builders, DPO losses, rewards,
generation backends, query selectors, prompt schedulers), with its one error for an unknown name.

Pure: the standard library only and nothing of the project, so every package (`policies` too) can
import it without breaking the dependency rule (cluster -> actors -> contracts, cluster -> policies).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Registry(Generic[Item]):
    """A registry of named pieces (policies, pair builders, DPO losses, rewards).

        LOSSES = Registry("DPO loss")
        @LOSSES.register("sigmoid")
        def sigmoid_loss(...): ...
        LOSSES.get("sigmod")  # ValueError: unknown DPO loss 'sigmod'. Did you mean 'sigmoid'? Registered: ...
    """

    def __init__(self, kind: str, error: type[Exception] = ValueError):
        self.kind = kind
        self._error = error
        self._items: dict[str, Item] = {}

    def register(self, name: str) -> Callable[[Item], Item]:
        """Decorator registering `item` under `name`; registering another item under a taken name fails."""

        def decorate(item: Item) -> Item:
            # Equal, not identical: a re-imported module re-registers an equal entry (a dataclass
            # wrapping the same function), which is no clash.
            if name in self._items and self._items[name] != item:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorate

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._items))

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> Item:
        """The item registered as `name`; otherwise an error naming the nearest registered name."""
        if name not in self._items:
            nearest = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
            raise self._error(f"unknown {self.kind} {name!r}.{hint} Registered: {', '.join(self.names())}.")
        return self._items[name]
