"""What every selection policy shares: the `Selection` result, the policy interface, `with_prompt_stats`.

A selection policy turns a round's scored table (one row per sampled response, see the contracts)
into the pairs the learner trains on plus one row of statistics per prompt for the round report.
Policies that need the model (implicit-reward PVar, BPO's embeddings and gradient features) ask the
model probe (`ModelProbe`, actors/contracts.py) they are given as `probe`; the driver's remote model
probe computes the answers in the generator actors, tests and benchmarks use an in-process one. This
package never imports torch or Ray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from actors.contracts import PAIRS_SCHEMA, PROMPT_STAT_COLUMNS, PROMPT_STATS_SCHEMA, REWARD_COLUMN, ModelProbe
from actors.options import KindOptions

# The schemas (PAIRS_SCHEMA, PROMPT_STATS_SCHEMA) and PROMPT_STAT_COLUMNS are contracts: actors/contracts.py.


@dataclass(frozen=True)
class Selection:
    """A policy's answer for one round: the pairs to train on and per-prompt statistics."""

    pairs: pa.Table  # PAIRS_SCHEMA
    prompt_stats: pa.Table  # PROMPT_STATS_SCHEMA
    # The PVar form behind prompt_stats.pvar: "reward", or "implicit" once pi differs from pi_init.
    pvar_source: str = "reward"

    @classmethod
    def empty(cls) -> Selection:
        """No prompts, no pairs, with the right schemas (an empty round must not crash the driver)."""
        return cls(pairs=PAIRS_SCHEMA.empty_table(), prompt_stats=PROMPT_STATS_SCHEMA.empty_table())


class SelectionPolicy(ABC):
    """Chooses which prompts and pairs of a scored round the learner trains on.

    Implementations declare the options they read as `Options` (a KindOptions subclass: what
    `selection.policy: {kind: <name>, ...}` may set), are built from an instance of it (`make_policy`)
    and are registered with @register_policy(name).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[KindOptions]] = KindOptions

    # The reward column and Bradley-Terry temperature of the policy's PVar statistic: what the diagnostics'
    # per-prompt gradient norms are measured with (prompt_stats.grad_norm against PVar).
    pvar_reward: str = REWARD_COLUMN
    pvar_tau: float = 1.0

    def __init__(self, options: KindOptions, learner_beta: float = 0.1):
        self.options = options

    @abstractmethod
    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, probe: ModelProbe | None = None
    ) -> Selection:
        """Return at most `pair_budget` pairs from `scored` and statistics for every prompt in it.

        `probe` (the model probe) is only needed by policies that use the model; they raise ValueError
        without it.
        """


def with_prompt_stats(table: pa.Table, prompt_stats: pa.Table) -> pa.Table:
    """`table` (one row per response or pair, with prompt_id) plus the PROMPT_STAT_COLUMNS of its prompt.

    Row order is kept; a column `table` already has (the pairs' `pvar`) is replaced by the stats'.
    """
    index = {prompt_id: row for row, prompt_id in enumerate(prompt_stats.column("prompt_id").to_pylist())}
    rows = pa.array([index[p] for p in table.column("prompt_id").to_pylist()], pa.int64())
    for name in PROMPT_STAT_COLUMNS:
        column = prompt_stats.column(name).take(rows)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table
