"""What the built-in policies share: their options, the round's candidate pool, and assembly.

A policy (pvar, random) differs only in the ORDER in which it takes prompts and how many pairs it
takes; everything else lives here: per-prompt statistics, every pair the pair builder can make, and
turning "prompts in priority order + a pair count" into a Selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from policies.base import PROMPT_STATS_SCHEMA, Selection, SelectionPolicy
from policies.grouping import GroupedRewards, group_rewards
from policies.pair_builders import CandidatePairs, get_pair_builder, pairs_table
from policies.pvar import grouped_preference_variance

# Columns a non-empty scored table must carry for selection (the contracts' rollouts + reward).
REQUIRED_COLUMNS = ("prompt_id", "sample_index", "prompt_token_ids", "response_token_ids", "response", "reward")


@dataclass(frozen=True)
class CandidatePool:
    """One round's prompts with their statistics and every pair the builder can make."""

    scored: pa.Table
    grouped: GroupedRewards
    pvar: np.ndarray  # per prompt
    pairs: CandidatePairs

    def pairs_per_prompt(self) -> np.ndarray:
        return np.bincount(self.pairs.prompt_codes, minlength=self.grouped.n_prompts)


@dataclass(frozen=True)
class PoolPolicy(SelectionPolicy):
    """Options shared by the built-in policies, validated at construction (bad config fails early).

    top_fraction: share of the round's prompts pvar keeps (highest PVar first); tau: Bradley-Terry
    temperature of PVar; pair_builder: a registered pair builder name; min_reward_gap: pairs whose
    reward gap is not above this are dropped.
    """

    top_fraction: float = 0.5
    tau: float = 1.0
    pair_builder: str = "max_min"
    min_reward_gap: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if not self.min_reward_gap >= 0:
            raise ValueError(f"min_reward_gap must be >= 0, got {self.min_reward_gap}")
        get_pair_builder(self.pair_builder)  # unknown names fail here, not mid-run

    def build_pool(self, scored: pa.Table, rng: np.random.Generator) -> CandidatePool:
        missing = [c for c in REQUIRED_COLUMNS if c not in scored.column_names]
        if missing:
            raise ValueError(f"scored table lacks column(s) {missing} needed for selection; it has {scored.column_names}")
        grouped = group_rewards(scored)
        pvar = grouped_preference_variance(grouped.codes, grouped.rewards, self.tau, grouped.n_prompts, grouped.prompt_ids)
        pairs = get_pair_builder(self.pair_builder)(grouped, self.min_reward_gap, rng)
        return CandidatePool(scored, grouped, pvar, pairs)

    def top_pvar_prompts(self, pool: CandidatePool, rng: np.random.Generator) -> np.ndarray:
        """Codes of the top `top_fraction` prompts, highest PVar first, equal PVar in random order."""
        order = np.lexsort((rng.random(pool.grouped.n_prompts), -pool.pvar))
        return order[: kept_prompt_count(pool.grouped.n_prompts, self.top_fraction)]


def check_budget(pair_budget: int) -> None:
    if isinstance(pair_budget, bool) or not isinstance(pair_budget, (int, np.integer)) or pair_budget < 0:
        raise ValueError(f"pair_budget must be a non-negative integer, got {pair_budget!r}")


def kept_prompt_count(n_prompts: int, top_fraction: float) -> int:
    """ceil(top_fraction * n_prompts), so any non-empty round keeps at least one prompt.

    Rounded to 9 decimals first so that float noise (0.3 * 10 = 3.0000000000000004) does not add one.
    """
    return min(n_prompts, math.ceil(round(top_fraction * n_prompts, 9)))


def select_in_order(pool: CandidatePool, prompt_order: np.ndarray, max_pairs: int) -> Selection:
    """Take pairs prompt by prompt in `prompt_order` until `max_pairs`; prompts not listed give none."""
    n_prompts = pool.grouped.n_prompts
    rank = np.full(n_prompts, n_prompts, dtype=np.int64)  # n_prompts = "not in the order"
    rank[prompt_order] = np.arange(len(prompt_order))
    pair_rank = rank[pool.pairs.prompt_codes]
    listed = np.flatnonzero(pair_rank < n_prompts)
    # Stable sort keeps each prompt's pairs in the builder's order of preference.
    taken = listed[np.argsort(pair_rank[listed], kind="stable")][:max_pairs]
    return selection_from_pairs(pool, taken)


def selection_from_pairs(
    pool: CandidatePool,
    taken: np.ndarray,
    cluster: np.ndarray | None = None,
    informativeness: np.ndarray | None = None,
) -> Selection:
    """The Selection made of the pool's candidate pairs at positions `taken` (in that order).

    `cluster` and `informativeness` are optional per-prompt arrays for the statistics table.
    """
    taken = np.asarray(taken, dtype=np.int64)
    codes = pool.pairs.prompt_codes[taken]
    pairs = pairs_table(pool.scored, pool.pairs.chosen_rows[taken], pool.pairs.rejected_rows[taken], pool.pvar[codes])
    pairs_selected = np.bincount(codes, minlength=pool.grouped.n_prompts)
    return Selection(pairs=pairs, prompt_stats=prompt_stats_table(pool, pairs_selected, cluster, informativeness))


def prompt_stats_table(
    pool: CandidatePool,
    pairs_selected: np.ndarray,
    cluster: np.ndarray | None = None,
    informativeness: np.ndarray | None = None,
) -> pa.Table:
    """One PROMPT_STATS_SCHEMA row per prompt, in order of first appearance in the scored table."""
    grouped = pool.grouped
    counts = grouped.counts.astype(np.float64)
    mean = np.bincount(grouped.codes, weights=grouped.rewards, minlength=grouped.n_prompts) / counts
    squared_dev = (grouped.rewards - mean[grouped.codes]) ** 2
    std = np.sqrt(np.bincount(grouped.codes, weights=squared_dev, minlength=grouped.n_prompts) / counts)
    missing = [None] * grouped.n_prompts
    columns = [
        grouped.prompt_ids, grouped.counts, pool.pvar, mean, std, pairs_selected > 0, pool.pairs_per_prompt(),
        pairs_selected, missing if cluster is None else cluster, missing if informativeness is None else informativeness,
    ]
    return pa.Table.from_arrays(
        [pa.array(values, field.type) for values, field in zip(columns, PROMPT_STATS_SCHEMA)], schema=PROMPT_STATS_SCHEMA
    )
