"""Learner recovery: a learner whose worker (or its node) dies is restarted from the last committed round and
the round in progress is trained again, up to `learner.max_restarts` times in a run.

`RecoveringLearner` has the learner's interface (submit / collect / train_round / node_ids / transport /
shutdown) and holds one `DPOLearner` at a time, built by a factory that starts it from the run's last
committed checkpoint with its training state (cluster/ray_runner.py). When collecting a round fails because
the Ray Train run lost a worker (`lost_a_worker`: a dead actor or node, a preemption, or a round that never
came back within learner.round_timeout_s, which is how a collective stuck on a dead peer shows), it:
1. says so in one line (the round, the rank and what ended it, the restart count);
2. shuts the broken learner down and empties the round's checkpoint folder (a half-written save);
3. starts a new learner from the last committed round (its weights, schedule step and AdamW state:
   actors/kernels/training_state.py) and submits the same pairs again.
Because the pairs are the round's own and every draw of the learner is counted from the seed, the round
and the rounds after it are what an uninterrupted run trains (docs/recovery.md). The round's learner
metrics carry `restarts` (this round's) and `restarts_total` (the run's so far).

An error in the training code itself (an exception every restart would raise again) is not a lost worker:
it ends the run at once, as before. Generators and scorers need no such wrapper: Ray restarts them and
retries their calls (cluster/actor_groups.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from cluster.learner_client import DPOLearner, LearnerError

logger = logging.getLogger(__name__)


def lost_a_worker(error: BaseException) -> str | None:
    """What ended the learner when it was a lost process or node ('rank 1: ActorDiedError'), None when it was
    anything else (the training code raised: restarting would raise again)."""
    from ray.exceptions import RayActorError
    from ray.train import ControllerError, WorkerGroupError

    if isinstance(error, LearnerError) and error.timed_out:
        return "no result within learner.round_timeout_s"
    cause = error.__cause__ if isinstance(error, LearnerError) else error
    if type(cause).__name__ == "PreemptionError":
        return "node preempted"
    if isinstance(cause, WorkerGroupError):
        dead = {rank: what for rank, failure in cause.worker_failures.items() if (what := _process_loss(failure))}
        if dead:
            return ", ".join(f"rank {rank}: {what}" for rank, what in sorted(dead.items()))
    if isinstance(cause, RayActorError):  # a call to the learner's mailbox actor (cluster/learner_client.py)
        return f"its mailbox: {type(cause).__name__}"
    if isinstance(cause, ControllerError):
        # A worker lost while Ray Train still starts the group fails the controller's call to it instead.
        what = _process_loss(cause.controller_failure)
        if what:
            return f"a starting worker: {what}"
    return None


def _process_loss(failure: BaseException) -> str | None:
    """'ActorDiedError' when a worker's failure is its process or node lost (Ray Train reports a dead worker as a
    failed or timed-out health check, named here by class: they live in Ray Train's internal module), else None."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, NodeDiedError, RayActorError

    lost = (ActorDiedError, ActorUnavailableError, NodeDiedError, RayActorError)
    if isinstance(failure, lost):
        return type(failure).__name__
    name = type(failure).__name__
    if name == "WorkerHealthCheckTimeoutError":
        return "health check timed out"
    if name == "WorkerHealthCheckFailedError":
        inner = getattr(failure, "health_check_failure", None)
        return type(inner).__name__ if isinstance(inner, lost) else "health check failed"
    return None


@dataclass
class _Round:
    index: int
    pairs: pa.Table
    checkpoint_dir: str


class RecoveringLearner:
    """A DPOLearner restarted from the last committed round when it loses a worker (module docstring)."""

    def __init__(self, start: Callable[[], DPOLearner], max_restarts: int):
        self._start, self.max_restarts = start, max_restarts
        self._learner = start()
        self._round: _Round | None = None
        self.restarts_total = 0

    @property
    def transport(self) -> str:
        return self._learner.transport

    def node_ids(self) -> list[str]:
        return self._learner.node_ids()

    def mailbox_node_id(self) -> str:
        return self._learner.mailbox_node_id()

    def worker_info(self) -> list[dict[str, Any]]:
        return self._learner.worker_info()

    def submit(self, round_index: int, pairs: pa.Table, checkpoint_dir: str) -> None:
        self._round = _Round(round_index, pairs, checkpoint_dir)
        self._learner.submit(round_index, pairs, checkpoint_dir)

    def collect(self, round_index: int) -> tuple[dict, Any]:
        restarts = 0
        while True:
            try:
                metrics, handle = self._learner.collect(round_index)
            except LearnerError as error:
                what = lost_a_worker(error)
                if what is None or self.restarts_total >= self.max_restarts:
                    raise
                restarts += 1
                self._restart(round_index, what)
                continue
            metrics.update(restarts=restarts, restarts_total=self.restarts_total)
            return metrics, handle

    def train_round(self, round_index: int, pairs: pa.Table, checkpoint_dir: str) -> tuple[dict, Any]:
        self.submit(round_index, pairs, checkpoint_dir)
        return self.collect(round_index)

    def _restart(self, round_index: int, what: str) -> None:
        self.restarts_total += 1
        logger.warning("learner lost a worker during round %d (%s); restarting it from the last committed round "
                       "and training round %d again (restart %d of learner.max_restarts=%d)", round_index, what,
                       round_index, self.restarts_total, self.max_restarts)
        self._learner.shutdown(timeout_s=30)
        work = self._round
        shutil.rmtree(Path(work.checkpoint_dir), ignore_errors=True)  # whatever the lost learner half-saved
        self._learner = self._start()
        self._learner.submit(work.index, work.pairs, work.checkpoint_dir)

    def shutdown(self, timeout_s: float = 60.0) -> None:
        self._learner.shutdown(timeout_s)
