"""The scheduler interface, its run context and the registry (the history table's schema is a contract:
PROMPT_HISTORY_SCHEMA in actors/contracts.py, since it is written to every round folder).

A scheduler's options are its own `Options` (a KindOptions subclass declared beside it, each field's type,
default, bounds and description written once there); the config picks one as `data.scheduler: {kind:
<name>, <its options>}` (cluster/config/inputs.py). What it reads besides them is the run's context,
`SchedulerContext`, which holds no option of any scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from actors.options import KindOptions, build_choice
from actors.registry import Registry


@dataclass(frozen=True)
class SchedulerContext:
    """The run's context a scheduler reads besides its own options: built once by the driver
    (cluster/settings.py `scheduler_context`)."""

    # run.seed: every draw and walk is seeded from it.
    seed: int = 0
    # labelling.tie_tolerance: a visit ties when its labelled rewards spread (max - min) by no more than this.
    tie_tolerance: float = 0.0
    # `embed(prompt texts, source) -> (n, d) unit vectors` (actors/kernels/prompt_embeddings.py `text_vectors`):
    # how the history scheduler's neighbours are found; the driver supplies it, since computing it needs
    # torch or a sentence encoder, which this package does not import. None: no embeddings available.
    embed: Callable[[list[str], str], np.ndarray] | None = None


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
    """Built as `cls(options, context)`: `options` an instance of its `Options`, `context` the run's."""

    name: str
    # Its own options (`data.scheduler: {kind: <name>, ...}`); a scheduler without any keeps plain KindOptions.
    Options: ClassVar[type[KindOptions]]

    def schedule(self, pool: pa.Table, count: int, round_index: int, exclude: np.ndarray | None = None) -> Schedule:
        """About `count` prompts of `pool` (prompt_id column) to roll out in round `round_index`, none of the rows
        in `exclude` (the round's earlier batches, when it refills: `labelling.refill_batches`)."""

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


_SCHEDULERS: Registry[type] = Registry("prompt scheduler")


def register_scheduler(name: str) -> Callable[[type], type]:
    """Class decorator registering a scheduler class (built as `cls(options, context)`) under `name`."""
    return _SCHEDULERS.register(name)


def registered_schedulers() -> tuple[str, ...]:
    return _SCHEDULERS.names()


def scheduler_options(name: str) -> type[KindOptions]:
    """The Options class of the registered scheduler `name` (ValueError naming the nearest name otherwise)."""
    return getattr(_SCHEDULERS.get(name), "Options", KindOptions)


def make_scheduler(name: str | KindOptions, context: SchedulerContext | None = None,
                   **options: object) -> PromptScheduler:
    """The scheduler `name` (or the kind of an Options the config validated), with its options: those given,
    then keyword `options` (tests: `make_scheduler("history", audit_fraction=0.25)`); the rest their defaults."""
    cls, built = build_choice(name, _SCHEDULERS.get, **options)
    scheduler = cls(built, context or SchedulerContext())
    scheduler.name = built.kind
    return scheduler
