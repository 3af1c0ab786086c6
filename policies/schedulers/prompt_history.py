"""The per-prompt history schedulers keep (PROMPT_HISTORY_SCHEMA), and the walk over the pool in epochs."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from actors.contracts import PROMPT_HISTORY_SCHEMA
from actors.options import KindOptions
from policies.schedulers.base import Schedule, SchedulerContext


class PromptHistory:
    """PROMPT_HISTORY_SCHEMA's columns as numpy arrays, one row per prompt id seen, in order of first sight."""

    def __init__(self) -> None:
        self.row_of: dict[str, int] = {}
        self.columns = {f.name: np.zeros(0, dtype=object if f.name == "prompt_id" else
                                         np.float64 if pa.types.is_floating(f.type) else np.int64)
                        for f in PROMPT_HISTORY_SCHEMA}

    def rows(self, prompt_ids) -> np.ndarray:
        """History rows of `prompt_ids`, adding a fresh row (never visited) for each one not seen yet."""
        new = [pid for pid in dict.fromkeys(prompt_ids) if pid not in self.row_of]
        if new:
            start = len(self.row_of)
            self.row_of.update({pid: start + i for i, pid in enumerate(new)})
            fresh = {"prompt_id": np.asarray(new, dtype=object), "visits": 0, "last_round": -1,
                     "last_mean": np.nan, "last_spread": np.nan, "tied_streak": 0, "skips": 0}
            for name, values in self.columns.items():
                value = fresh[name]
                extra = value if isinstance(value, np.ndarray) else np.full(len(new), value, dtype=values.dtype)
                self.columns[name] = np.concatenate([values, extra])
        return np.asarray([self.row_of[pid] for pid in prompt_ids], dtype=np.int64)

    def get(self, name: str, prompt_ids) -> np.ndarray:
        rows = self.rows(prompt_ids)  # first: it may grow the columns
        return self.columns[name][rows]

    def peek(self, name: str, prompt_ids, missing) -> np.ndarray:
        """Like `get`, without adding rows: `missing` for prompts not seen yet."""
        column = self.columns[name]
        rows = np.asarray([self.row_of.get(pid, -1) for pid in prompt_ids], dtype=np.int64)
        return np.where(rows >= 0, column[np.maximum(rows, 0)] if column.size else missing, missing)

    def add_skips(self, prompt_ids) -> None:
        rows = self.rows(prompt_ids)
        np.add.at(self.columns["skips"], rows, 1)

    def record(self, round_index: int, scored: pa.Table, tie_tolerance: float) -> dict[str, bool]:
        """Add one visit per prompt with at least two finite labelled rewards in `scored`; returns, per such
        prompt, whether its rewards tied (spread within `tie_tolerance`)."""
        ids = np.asarray(scored.column("prompt_id").to_pylist(), dtype=object)
        rewards = scored.column("reward").to_numpy(zero_copy_only=False).astype(np.float64)
        tied: dict[str, bool] = {}
        for pid in dict.fromkeys(ids.tolist()):
            values = rewards[(ids == pid) & np.isfinite(rewards)]
            if values.size < 2:
                continue  # one label says nothing about the spread
            spread = float(values.max() - values.min())
            row = self.rows([pid])[0]
            tied[pid] = spread <= tie_tolerance
            c = self.columns
            c["visits"][row] += 1
            c["last_round"][row] = round_index
            c["last_mean"][row] = float(values.mean())
            c["last_spread"][row] = spread
            c["tied_streak"][row] = c["tied_streak"][row] + 1 if tied[pid] else 0
        return tied

    def to_table(self) -> pa.Table:
        return pa.Table.from_pydict({name: values.tolist() for name, values in self.columns.items()},
                                    schema=PROMPT_HISTORY_SCHEMA)

    @classmethod
    def from_table(cls, table: pa.Table) -> "PromptHistory":
        history = cls()
        table = table.select(PROMPT_HISTORY_SCHEMA.names).cast(PROMPT_HISTORY_SCHEMA)
        for name in PROMPT_HISTORY_SCHEMA.names:
            values = table.column(name).to_numpy(zero_copy_only=False)
            history.columns[name] = values.astype(history.columns[name].dtype)
        history.row_of = {pid: i for i, pid in enumerate(history.columns["prompt_id"].tolist())}
        return history


class EpochWalk:
    """Walks the pool's rows in epochs: each epoch a permutation drawn from (seed, epoch), so the position
    (epoch, index) is the whole state and every prompt is offered once per epoch."""

    def __init__(self, seed: int, epoch: int = 0, position: int = 0):
        self.seed, self.epoch, self.position = seed, epoch, position
        self._order: np.ndarray | None = None

    def next(self, pool_size: int) -> int:
        if self._order is None or self._order.size != pool_size:
            self._order = np.random.default_rng([self.seed, self.epoch, 31]).permutation(pool_size)
        if self.position >= pool_size:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = np.random.default_rng([self.seed, self.epoch, 31]).permutation(pool_size)
        row = int(self._order[self.position])
        self.position += 1
        return row

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}


class HistoryKeeper:
    """What the schedulers share: the per-prompt history, recorded after labelling, and that history as the
    whole state (a scheduler with more state extends `state` and `restore`). A scheduler with options of its
    own declares them as its `Options`."""

    Options: ClassVar[type[KindOptions]] = KindOptions

    def __init__(self, options: KindOptions, context: SchedulerContext):
        self.options, self.context = options, context
        self.history = PromptHistory()

    def record(self, round_index: int, scored: pa.Table, schedule: Schedule, pool: pa.Table) -> None:
        tied = self.history.record(round_index, scored, self.context.tie_tolerance)
        schedule.details["tied_share"] = float(np.mean(list(tied.values()))) if tied else None

    def state(self) -> tuple[pa.Table, dict]:
        return self.history.to_table(), {}

    def restore(self, history: pa.Table, scalars: dict) -> None:
        self.history = PromptHistory.from_table(history)
