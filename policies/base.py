"""What every selection policy shares: the `Selection` result, the policy interface and the schemas.

A selection policy turns a round's scored table (one row per sampled response, see the contracts)
into the pairs the learner trains on plus one row of statistics per prompt for the round report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

# The learner's input. `pvar` is the per-prompt statistic of the prompt each pair came from; every
# built-in policy fills it so reports can compare policies on the same columns.
PAIRS_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt_token_ids", pa.list_(pa.int32())),
        ("chosen_token_ids", pa.list_(pa.int32())),
        ("rejected_token_ids", pa.list_(pa.int32())),
        ("chosen_response", pa.string()),
        ("rejected_response", pa.string()),
        ("chosen_reward", pa.float64()),
        ("rejected_reward", pa.float64()),
        ("pvar", pa.float64()),
    ]
)

# One row per prompt of the scored table. reward_std is the population std (ddof=0), so a prompt
# with a single response has std 0 rather than NaN. `selected`: at least one of its pairs is in
# Selection.pairs (what was actually trained on, not merely ranked high).
PROMPT_STATS_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("n_responses", pa.int64()),
        ("pvar", pa.float64()),
        ("reward_mean", pa.float64()),
        ("reward_std", pa.float64()),
        ("selected", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class Selection:
    """A policy's answer for one round: the pairs to train on and per-prompt statistics."""

    pairs: pa.Table  # PAIRS_SCHEMA
    prompt_stats: pa.Table  # PROMPT_STATS_SCHEMA

    @classmethod
    def empty(cls) -> Selection:
        """No prompts, no pairs, with the right schemas (an empty round must not crash the driver)."""
        return cls(pairs=PAIRS_SCHEMA.empty_table(), prompt_stats=PROMPT_STATS_SCHEMA.empty_table())


class SelectionPolicy(ABC):
    """Chooses which prompts and pairs of a scored round the learner trains on.

    Implementations take their options as constructor keyword arguments (no **kwargs: make_policy
    passes only the options a constructor names) and are registered with @register_policy(name).
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def select(self, scored: pa.Table, pair_budget: int, rng: np.random.Generator) -> Selection:
        """Return at most `pair_budget` pairs from `scored` and statistics for every prompt in it."""
