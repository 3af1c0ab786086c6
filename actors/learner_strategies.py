"""The learner's strategies by name: how the Ray Train workers hold and update the policy (`learner.strategy`).

A strategy is chosen like every pluggable piece, `learner.strategy: {kind: <name>, <its options>}`
(actors/options.py), and declares its options here, once: the config validates against them and the
learner worker (actors/learner_worker.py) receives the very Options object. Registered:

- `ddp`: every worker holds the whole model and DistributedDataParallel (Ray Train's `prepare_model`)
  all-reduces the gradients;
- `fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard` on every decoder block, then the root): each worker
  holds 1/num_workers of the parameters, gradients and AdamW state, and gathers a block's parameters only
  while it runs (actors/kernels/sharding.py). Its options say whether the shards live on the CPU and whether
  a block is re-sharded between its forward and backward pass.

Mixed precision is not a strategy option but `learner.mixed_precision` (actors/settings.py): both strategies
read it. Pydantic only, so the config imports it without torch.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

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


@register_strategy("fsdp")
class FsdpOptions(KindOptions):
    """Fully sharded data-parallel (FSDP2): parameters, gradients and optimizer state split over the workers."""

    cpu_offload: bool = Field(
        False,
        description="Keep the parameter shards, their gradients and AdamW's state in CPU memory (FSDP2's "
        "CPUOffloadPolicy); each block is copied to the GPU only while it runs and the optimizer step runs on "
        "the CPU. Needs learner.use_gpu (on CPU workers everything is in CPU memory already).",
    )
    reshard_after_forward: bool = Field(
        True,
        description="Free each block's gathered parameters after its forward pass and gather them again for "
        "the backward (less memory); False keeps them until the backward (one all-gather fewer per block).",
    )
    gather_bucket_mb: float = Field(
        512.0, gt=0,
        description="After each round the full weights are gathered to rank 0 this many MB at a time (a larger "
        "tensor alone): each bucket is written as a shard of the round's checkpoint and handed to the weight "
        "transport, then dropped, so rank 0's device holds one bucket, not a copy of the model (object_store and disk "
        "keep nothing more; broadcast keeps the packed buckets in host memory until the generators join).",
    )


def strategy_options(name: str) -> type[KindOptions]:
    """The Options class of the learner strategy `name` (ValueError naming the nearest name otherwise)."""
    return _STRATEGIES.get(name)


def registered_strategies() -> tuple[str, ...]:
    return _STRATEGIES.names()
