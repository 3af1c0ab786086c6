"""`pools`: prime-rl's difficulty pools. Each prompt belongs to the first pool whose upper bound its last
mean labelled reward does not exceed (bounds ascending, default hard <= 0.25, normal <= 0.75, easy <= 1.0,
weights 0.2 / 1.0 / 0.2); a prompt never judged, or above every bound, weighs 1. A round draws its prompts
without replacement with probability in proportion to their weight; prompts of weight 0 are drawn only when
the others run out. Rewards outside [0, 1] need bounds of their own (`data.scheduler.pool_bounds`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from actors.options import KindOptions
from policies.schedulers.base import Schedule, excluded_mask, refill_seed, register_scheduler
from policies.schedulers.prompt_history import HistoryKeeper


class PoolsOptions(KindOptions):
    """`data.scheduler: {kind: pools, ...}`: the difficulty pools and how often each is drawn."""

    pool_bounds: list[float] = Field(
        default_factory=lambda: [0.25, 0.75, 1.0],
        description="Ascending upper bounds of a prompt's last mean reward, one per pool.")
    pool_weights: list[float] = Field(
        default_factory=lambda: [0.2, 1.0, 0.2],
        description="Draw weight of each pool (unjudged prompts weigh 1).")

    @model_validator(mode="after")
    def _one_weight_per_ascending_pool(self) -> PoolsOptions:
        if len(self.pool_bounds) != len(self.pool_weights):
            raise ValueError(f"pool_bounds has {len(self.pool_bounds)} entries and pool_weights "
                             f"{len(self.pool_weights)}: give one weight per pool")
        if sorted(self.pool_bounds) != self.pool_bounds:
            raise ValueError(f"pool_bounds must be ascending, got {self.pool_bounds}")
        if any(w < 0 for w in self.pool_weights):
            raise ValueError(f"pool_weights must be >= 0, got {self.pool_weights}")
        return self


def pool_of(last_mean: np.ndarray, visits: np.ndarray, bounds) -> np.ndarray:
    """Pool index per prompt from its last mean reward; -1 when never judged or above every bound."""
    judged = (visits > 0) & np.isfinite(last_mean)
    pool = np.searchsorted(np.asarray(bounds, dtype=np.float64), np.nan_to_num(last_mean), side="left")
    return np.where(judged & (pool < len(bounds)), pool, -1)


def pool_weights(pools: np.ndarray, weights) -> np.ndarray:
    """Weight per prompt: its pool's weight, 1 outside every pool."""
    return np.where(pools >= 0, np.asarray(weights, dtype=np.float64)[np.maximum(pools, 0)], 1.0)


@register_scheduler("pools")
class PoolsScheduler(HistoryKeeper):
    Options = PoolsOptions
    options: PoolsOptions

    def schedule(self, pool: pa.Table, count: int, round_index: int, exclude: np.ndarray | None = None) -> Schedule:
        rng = np.random.default_rng([self.context.seed, round_index, 41, *refill_seed(exclude)])
        ids = pool.column("prompt_id").to_pylist()
        pools = pool_of(self.history.get("last_mean", ids), self.history.get("visits", ids), self.options.pool_bounds)
        weights = pool_weights(pools, self.options.pool_weights)
        excluded = excluded_mask(pool.num_rows, exclude)
        wanted = min(count, pool.num_rows - int(excluded.sum()))
        positive = np.flatnonzero((weights > 0) & ~excluded)
        take = min(wanted, positive.size)
        rows = rng.choice(positive, size=take, replace=False, p=weights[positive] / weights[positive].sum()) \
            if take else np.zeros(0, np.int64)
        if take < wanted:  # only weight-0 prompts are left
            rest = np.flatnonzero((weights <= 0) & ~excluded)
            rows = np.concatenate([rows, rng.choice(rest, size=wanted - take, replace=False)])
        counts = {"unjudged": int(np.sum(pools[rows] < 0)),
                  **{f"pool_{i}": int(np.sum(pools[rows] == i)) for i in range(len(self.options.pool_bounds))}}
        return Schedule(np.sort(rows.astype(np.int64)), details={"examined": pool.num_rows, "skipped": 0, **counts})
