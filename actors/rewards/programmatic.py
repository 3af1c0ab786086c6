"""Programmatic rewards: named Python functions that score responses, for verifiable tasks.

A reward function takes a batch as an Arrow table (every prompt column, e.g. `prompt`, `answer`,
plus `response`) and returns one float per row (numpy array). NaN marks a response it cannot score;
the driver drops such rows and counts them. Register with `@register_reward("name")`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from actors.contracts import InputError
from actors.contracts import Registry

RewardFn = Callable[[pa.Table], np.ndarray]
_REWARDS: Registry[RewardFn] = Registry("programmatic reward", error=InputError)
register_reward = _REWARDS.register


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
    """The reward registered as `name`; InputError naming the nearest registered one otherwise."""
    return _REWARDS.get(name)


def registered_rewards() -> list[str]:
    return list(_REWARDS.names())


# Built-in rewards register here so that importing this module is enough to find them by name.
from actors.rewards.builtin_task import builtin_task_reward  # noqa: E402

register_reward("builtin_task")(builtin_task_reward)
from actors.rewards.contains_answer import contains_answer_reward  # noqa: E402

register_reward("contains_answer")(contains_answer_reward)
