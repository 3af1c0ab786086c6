"""The mailbox between the driver's DPOLearner and the long-lived Ray Train workers.

Ray Train runs one `train_loop_per_worker` per worker until it returns; to keep one TorchTrainer
alive across rounds, that loop waits here for its next message (a round to train, or stop) and
rank 0 posts each round's result back. Messages are numbered, so every rank reads every message in
order whatever round indices the driver uses (a resumed run starts at its next round).

An async actor with num_cpus=0: waiting costs nothing and it never competes with the workers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray


class LearnerMailbox:
    """Numbered messages to the workers; results and worker registrations back to the driver."""

    def __init__(self, world_size: int) -> None:
        # Results carry a WeightsHandle; unpickling it imports actors.weight_sync and so torch (~1 s).
        # Import it now, while the workers start, instead of inside round 0's result delivery.
        import actors.weight_sync  # noqa: F401

        self._world_size = world_size
        self._messages: list[dict[str, Any] | None] = []
        self._results: dict[int, dict[str, Any]] = {}
        self._workers: dict[int, dict[str, Any]] = {}
        self._rounds_seen: set[int] = set()
        self._changed: asyncio.Condition | None = None  # created on the actor's event loop

    def node_id(self) -> str:
        """The Ray node this mailbox lives on (create_mailbox pins it to the driver's)."""
        return ray.get_runtime_context().get_node_id()

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self._condition():
            self._condition().notify_all()

    async def _wait(self, predicate, timeout_s: float) -> bool:
        try:
            async with self._condition():
                await asyncio.wait_for(self._condition().wait_for(predicate), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    # ---- driver side ----------------------------------------------------------------------

    async def put_round(self, round_index: int, pairs: list, checkpoint_dir: str) -> int:
        """Queue a round for the workers; `pairs` is [ObjectRef of the pairs table]. Returns its number."""
        if round_index in self._rounds_seen:
            raise ValueError(f"round {round_index} was already sent to this learner")
        self._rounds_seen.add(round_index)
        return await self._put({"kind": "train", "round_index": round_index, "pairs": pairs,
                                "checkpoint_dir": checkpoint_dir})  # fmt: skip

    async def put_stop(self) -> int:
        return await self._put({"kind": "stop"})

    async def _put(self, message: dict[str, Any]) -> int:
        self._messages.append(message)
        await self._notify()
        return len(self._messages) - 1

    async def get_result(self, round_index: int, timeout_s: float) -> dict[str, Any] | None:
        """The round's result (removed from the mailbox), or None if it has not come within timeout_s."""
        if not await self._wait(lambda: round_index in self._results, timeout_s):
            return None
        return self._results.pop(round_index)

    def forget(self, sequence: int) -> None:
        """Drop a delivered message's payload so the object store can free the pairs table."""
        self._messages[sequence] = {"kind": "forgotten"}

    async def wait_workers(self, timeout_s: float) -> dict[int, dict[str, Any]]:
        """Every rank's registration (pid, actor id, node), waiting up to timeout_s for all to arrive."""
        await self._wait(lambda: len(self._workers) >= self._world_size, timeout_s)
        return dict(self._workers)

    # ---- worker side ----------------------------------------------------------------------

    async def register_worker(self, rank: int, info: dict[str, Any]) -> None:
        self._workers[rank] = info
        await self._notify()

    async def next_message(self, sequence: int, timeout_s: float) -> dict[str, Any] | None:
        """Message number `sequence`, or None if it has not been sent within timeout_s."""
        if not await self._wait(lambda: len(self._messages) > sequence, timeout_s):
            return None
        return self._messages[sequence]

    async def post_result(self, round_index: int, result: dict[str, Any]) -> None:
        self._results[round_index] = result
        await self._notify()


def create_mailbox(world_size: int) -> ray.actor.ActorHandle:
    """Start the mailbox actor on the caller's (the driver's) node. max_concurrency lets every rank and the driver
    wait on it at once.

    Pinned there because it needs no resources, so Ray would place it on any node, a generator pool's included,
    and the loss of that node would take the learner's mailbox with it; on the driver's node it lives and dies with
    the driver."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor_cls = ray.remote(num_cpus=0, max_concurrency=64)(LearnerMailbox)
    return actor_cls.options(scheduling_strategy=here).remote(world_size)
