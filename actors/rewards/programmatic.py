"""Programmatic rewards: named Python functions that score responses, for verifiable tasks.

A reward function takes a batch as an Arrow table (every prompt column, e.g. `prompt`, `answer`,
plus `response`) and returns one float per row (numpy array). NaN marks a response it cannot score;
the driver drops such rows and counts them. Register with `@register_reward("name")`.

Two optional parts of a registration, for rewards that need them (the `ifeval` reward uses both):
`extra_fields`, columns the reward writes besides its `reward_<name>` column (it then returns a
`RewardOutput` from actors/contracts.py instead of an array; they land in the scored table after its
column), and `check_prompts(prompts, key, source)`, a pre-flight check of a prompt table that raises
InputError naming `source` when the prompts lack what the reward reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from actors.contracts import InputError, RewardOutput
from actors.registry import Registry
from actors.rewards.ifeval_fields import IFEVAL_SCORE_FIELDS

RewardFn = Callable[[pa.Table], "np.ndarray | RewardOutput"]
PromptCheck = Callable[[pa.Table, str, str], None]


@dataclass(frozen=True)
class ProgrammaticReward:
    """One registered reward: the function, the extra columns it writes, its prompt check."""

    fn: RewardFn
    extra_fields: tuple[pa.Field, ...] = ()
    check_prompts: PromptCheck | None = None


_REWARDS: Registry[ProgrammaticReward] = Registry("programmatic reward", error=InputError)


def register_reward(name: str, *, extra_fields: tuple[pa.Field, ...] = (),
                    check_prompts: PromptCheck | None = None) -> Callable[[RewardFn], RewardFn]:
    """Decorator registering a reward function under `name`; returns the function unchanged."""

    def decorate(fn: RewardFn) -> RewardFn:
        _REWARDS.register(name)(ProgrammaticReward(fn, tuple(extra_fields), check_prompts))
        return fn

    return decorate


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
    """The reward function registered as `name`; InputError naming the nearest registered one otherwise."""
    return _REWARDS.get(name).fn


def reward_entry(name: str) -> ProgrammaticReward:
    """The whole registration of `name` (function, extra columns, prompt check)."""
    return _REWARDS.get(name)


def registered_rewards() -> list[str]:
    return list(_REWARDS.names())


# Built-in rewards register here so that importing this module is enough to find them by name.
from actors.rewards.builtin_task import builtin_task_exact_reward, builtin_task_reward  # noqa: E402

register_reward("builtin_task")(builtin_task_reward)
register_reward("builtin_task_exact")(builtin_task_exact_reward)
from actors.rewards.contains_answer import contains_answer_reward  # noqa: E402

register_reward("contains_answer")(contains_answer_reward)
from actors.rewards.ifeval import check_ifeval_prompts, ifeval_reward  # noqa: E402

register_reward("ifeval", extra_fields=IFEVAL_SCORE_FIELDS, check_prompts=check_ifeval_prompts)(ifeval_reward)
from actors.rewards.proxies import (  # noqa: E402
    NOISE_SWEEP,
    builtin_task_length_proxy_reward,
    builtin_task_proxy_reward,
    ifeval_proxy_reward,
    noise_sweep_name,
    noisy_proxy,
)

# Proxies (role: proxy in scoring.rewards): cheap, noisier stand-ins for the labeller (docs/labels.md).
register_reward("builtin_task_proxy")(builtin_task_proxy_reward)
for _half_width in NOISE_SWEEP:
    register_reward(noise_sweep_name(_half_width))(noisy_proxy(_half_width))
register_reward("builtin_task_length_proxy")(builtin_task_length_proxy_reward)
register_reward("ifeval_proxy", check_prompts=check_ifeval_prompts)(ifeval_proxy_reward)

# Every extra column a built-in reward writes, taken before any user module registers: prompt loading
# rejects source columns of these names (cluster/data/prompts.py), as it rejects the rollout and reward
# columns (`is_pipeline_column` in actors/contracts.py), so a new built-in reward needs no edit there.
BUILTIN_EXTRA_COLUMNS = frozenset(field.name for name in registered_rewards()
                                  for field in reward_entry(name).extra_fields)
