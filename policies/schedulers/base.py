"""The scheduler interface, its settings and the registry (the history table's schema is a contract:
PROMPT_HISTORY_SCHEMA in actors/contracts.py, since it is written to every round folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import pyarrow as pa

from actors.registry import Registry


@dataclass(frozen=True)
class SchedulerSettings:
    """Built by the driver (cluster/settings.py `scheduler_settings`) from `data.scheduling`."""

    seed: int = 0
    # A visit ties when its labelled rewards spread (max - min) by no more than this.
    tie_tolerance: float = 0.0
    # history: P(skip) = 1 - max(p ** streak, floor); p starts at p_start and moves by p_step a round towards
    # a share of tied prompts of target_tied_share among those rolled out, within [p_min, p_max].
    p_start: float = 0.5
    p_step: float = 0.01
    p_min: float = 0.05
    p_max: float = 0.95
    floor: float = 0.01
    target_tied_share: float = 0.25
    # history and pools: this share of the skipped prompts (at least one when any is skipped) is rolled out
    # anyway, to measure how often a skip was wrong.
    audit_fraction: float = 0.0
    # pools: ascending upper bounds of last mean reward and the weight of each pool; unseen prompts weigh 1.
    pool_bounds: tuple[float, ...] = (0.25, 0.75, 1.0)
    pool_weights: tuple[float, ...] = (0.2, 1.0, 0.2)
    # history: a prompt never visited borrows the smallest tied streak of its `neighbours` nearest visited
    # prompts when all are at least `neighbour_min_similarity` alike (0: off; policies/schedulers/neighbours.py),
    # in the space of `embed(prompt texts) -> (n, d) unit vectors`, which the driver supplies.
    neighbours: int = 0
    neighbour_min_similarity: float = 0.8
    embed: Callable[[list[str]], np.ndarray] | None = None


@dataclass
class Schedule:
    """One round's choice, as rows of the pool table."""

    rows: np.ndarray                   # int64: the prompts to roll out (audited ones included), ascending
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # examined and not rolled out
    audited: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # subset of rows: skipped, rolled out anyway
    details: dict = field(default_factory=dict)                                   # metrics.json `scheduling`
    borrowed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # subset of skipped: never visited,
                                                                                  # skipped on a borrowed streak


class PromptScheduler(Protocol):
    name: str

    def schedule(self, pool: pa.Table, count: int, round_index: int, exclude: np.ndarray | None = None) -> Schedule:
        """About `count` prompts of `pool` (prompt_id column) to roll out in round `round_index`, none of the rows
        in `exclude` (the round's earlier batches, when it refills: `data.refill_batches`)."""

    def record(self, round_index: int, scored: pa.Table, schedule: Schedule, pool: pa.Table) -> None:
        """Update the history from the round's labelled rows (prompt_id, reward)."""

    def state(self) -> tuple[pa.Table, dict]:
        """The whole state: the history table (PROMPT_HISTORY_SCHEMA, actors/contracts.py) and a JSON-able dict."""

    def restore(self, history: pa.Table, scalars: dict) -> None:
        """Back to a state `state()` returned."""


def excluded_mask(pool_size: int, exclude: np.ndarray | None) -> np.ndarray:
    """Boolean per pool row: True for the rows a refill batch may not draw again."""
    mask = np.zeros(pool_size, dtype=bool)
    if exclude is not None and len(exclude):
        mask[np.asarray(exclude, dtype=np.int64)] = True
    return mask


def refill_seed(exclude: np.ndarray | None) -> list[int]:
    """What a refill batch adds to its scheduler's rng seed: nothing for a round's first batch (so runs without
    refill draw exactly as before), the number of rows already taken for a later one."""
    return [] if exclude is None or not len(exclude) else [int(len(exclude))]


# Summed when a round's batches' schedules are merged; every other detail is the last batch's.
COUNTED_DETAILS = ("examined", "skipped", "skipped_unvisited", "audited", "unjudged")


def merge_schedules(first: Schedule, later: Schedule) -> Schedule:
    """One round's schedule from two of its batches (a refill drew `later` excluding `first.rows`)."""
    rows = np.sort(np.concatenate([first.rows, later.rows]))
    # A prompt skipped in one batch and rolled out in the other was rolled out.
    skipped = np.setdiff1d(np.union1d(first.skipped, later.skipped), rows)
    details = {**first.details, **later.details}
    for key, value in first.details.items():
        if key in later.details and (key in COUNTED_DETAILS or key.startswith("pool_")):
            details[key] = value + later.details[key]
    details["batches"] = first.details.get("batches", 1) + 1
    return Schedule(rows, skipped, np.union1d(first.audited, later.audited).astype(np.int64), details,
                    borrowed=np.intersect1d(np.union1d(first.borrowed, later.borrowed), skipped).astype(np.int64))


SchedulerFactory = Callable[[SchedulerSettings], PromptScheduler]
_SCHEDULERS: Registry[SchedulerFactory] = Registry("prompt scheduler")


def register_scheduler(name: str) -> Callable[[SchedulerFactory], SchedulerFactory]:
    return _SCHEDULERS.register(name)


def registered_schedulers() -> tuple[str, ...]:
    return _SCHEDULERS.names()


def check_scheduler_name(name: str) -> None:
    """ValueError naming the nearest registered scheduler unless `name` is registered."""
    _SCHEDULERS.get(name)


def make_scheduler(name: str, settings: SchedulerSettings | None = None) -> PromptScheduler:
    scheduler = _SCHEDULERS.get(name)(settings or SchedulerSettings())
    scheduler.name = name
    return scheduler
