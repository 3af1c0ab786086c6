"""The learner's strategies by name: how the Ray Train workers hold and update the policy (`learner.strategy`).

A strategy is chosen like every pluggable piece, `learner.strategy: {kind: <name>, <its options>}`
(actors/options.py), and declares its options here, once: the config validates against them and the
learner worker (actors/learner_worker.py) receives the very Options object. Registered: `ddp`, every
worker holds the whole model and DistributedDataParallel (Ray Train's `prepare_model`) all-reduces the
gradients. Nothing branches on the strategy yet: the next issue adds `fsdp` (sharded parameters, gradients
and optimizer state), its options and the branch in the worker. Pydantic only, so the config imports it
without torch.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.options import KindOptions
from actors.registry import Registry

# The strategy of a config that names none.
DEFAULT_STRATEGY = "ddp"

_STRATEGIES: Registry[type[KindOptions]] = Registry("learner strategy")


def register_strategy(name: str) -> Callable[[type[KindOptions]], type[KindOptions]]:
    """Class decorator registering a strategy's Options class under `name`."""
    return _STRATEGIES.register(name)


@register_strategy("ddp")
class DdpOptions(KindOptions):
    """Data-parallel: a whole copy of the model per worker, gradients all-reduced every step. No options yet."""


def strategy_options(name: str) -> type[KindOptions]:
    """The Options class of the learner strategy `name` (ValueError naming the nearest name otherwise)."""
    return _STRATEGIES.get(name)


def registered_strategies() -> tuple[str, ...]:
    return _STRATEGIES.names()
