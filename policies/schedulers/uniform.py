"""`uniform`: a fresh random draw of prompts each round, without replacement within the round (the schedule
every run had before scheduling existed), and `epochs`: the pool walked in epochs. Both keep the per-prompt
history too, for the report. Neither has options of its own (`data.scheduler: uniform`): the draw is
seeded by the run (SchedulerContext.seed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.options import KindOptions
from policies.schedulers.base import Schedule, SchedulerContext, excluded_mask, refill_seed, register_scheduler
from policies.schedulers.prompt_history import EpochWalk, HistoryKeeper


def uniform_draw(pool_size: int, count: int, seed: int, round_index: int) -> np.ndarray:
    """Rows of a reproducible draw of `count` prompts (all when the pool is smaller), ascending."""
    rng = np.random.default_rng([seed, round_index])
    return np.sort(rng.choice(pool_size, size=min(count, pool_size), replace=False))


@register_scheduler("uniform")
class UniformScheduler(HistoryKeeper):
    def schedule(self, pool: pa.Table, count: int, round_index: int, exclude: np.ndarray | None = None) -> Schedule:
        if exclude is None or not len(exclude):
            rows = uniform_draw(pool.num_rows, count, self.context.seed, round_index)
        else:  # a refill batch: a draw from the prompts the round has not rolled out
            available = np.flatnonzero(~excluded_mask(pool.num_rows, exclude))
            rng = np.random.default_rng([self.context.seed, round_index, *refill_seed(exclude)])
            rows = np.sort(rng.choice(available, size=min(count, available.size), replace=False))
        return Schedule(rows, details={"examined": int(rows.size), "skipped": 0})


@register_scheduler("epochs")
class EpochScheduler(UniformScheduler):
    """`epochs`: walks the pool in epochs (a seeded permutation each, the position in the committed state), so
    every prompt is rolled out once per epoch; `history` without its skipping, the control it is measured
    against."""

    def __init__(self, options: KindOptions, context: SchedulerContext):
        super().__init__(options, context)
        self.walk = EpochWalk(context.seed)

    def schedule(self, pool: pa.Table, count: int, round_index: int, exclude: np.ndarray | None = None) -> Schedule:
        excluded = excluded_mask(pool.num_rows, exclude)
        rows: dict[int, None] = {}
        while len(rows) < min(count, pool.num_rows - int(excluded.sum())):
            row = self.walk.next(pool.num_rows)
            if not excluded[row]:
                rows[row] = None
        return Schedule(np.sort(np.fromiter(rows, dtype=np.int64)),
                        details={"examined": len(rows), "skipped": 0, **self.walk.state()})

    def state(self) -> tuple[pa.Table, dict]:
        return self.history.to_table(), self.walk.state()

    def restore(self, history: pa.Table, scalars: dict) -> None:
        super().restore(history, scalars)
        self.walk = EpochWalk(self.context.seed, int(scalars["epoch"]), int(scalars["position"]))
