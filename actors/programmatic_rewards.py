"""Programmatic rewards: named Python functions that score responses, for verifiable tasks.

A reward function takes a batch as an Arrow table (every prompt column, e.g. `prompt`, `answer`,
plus `response`) and returns one float per row (numpy array). NaN marks a response it cannot score;
the driver drops such rows and counts them. Register with `@register_reward("name")`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from actors.errors import InputError

RewardFn = Callable[[pa.Table], np.ndarray]
_REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    def decorator(fn: RewardFn) -> RewardFn:
        if name in _REWARDS and _REWARDS[name] is not fn:
            raise ValueError(f"programmatic reward {name!r} is already registered")
        _REWARDS[name] = fn
        return fn

    return decorator


def import_reward_modules(modules: list[str]) -> None:
    """Import user modules whose `@register_reward` functions the config names (scoring.reward_modules)."""
    import importlib

    for index, module in enumerate(modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InputError(
                f"scoring.reward_modules[{index}]: cannot import {module!r} ({exc}); it must be importable "
                "on every node (installed, on PYTHONPATH, or inside the job's --working-dir)"
            ) from None


def get_reward(name: str) -> RewardFn:
    if name not in _REWARDS:
        raise InputError(
            f"scoring.rewards: no programmatic reward named {name!r}; registered: {sorted(_REWARDS)}"
        )
    return _REWARDS[name]


def registered_rewards() -> list[str]:
    return sorted(_REWARDS)


# Built-in rewards register here so that importing this module is enough to find them by name.
from actors.builtin_task_reward import builtin_task_reward  # noqa: E402

register_reward("builtin_task")(builtin_task_reward)
