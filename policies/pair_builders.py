"""Pair builders by name: which (chosen, rejected) responses a prompt contributes, and the pairs table.

A builder sees every prompt of the round at once (a `GroupedRewards`) and returns row indices into
the scored table, vectorised with lexsort rather than a loop over prompts. Built-in builders:

- max_min: chosen = highest reward, rejected = lowest (papers.md section 1's assumption); one pair
  per prompt. Ties go to the lowest sample_index on both sides, so the result is deterministic.
- max_random: chosen = highest reward; rejected drawn uniformly (with the rng) among the prompt's
  responses whose gap to the chosen one exceeds min_reward_gap; one pair per prompt.
- all_pairs_above_margin: every ordered pair whose reward gap exceeds min_reward_gap, largest gap
  first within a prompt (so a budget cut keeps the most decisive pairs).

Every builder drops pairs whose reward gap is <= min_reward_gap (and always those with no gap: a
tie carries no preference). Pairs come grouped by prompt, each prompt's pairs in the builder's order
of preference (the first are kept first when a budget cuts a prompt short).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from policies.base import PAIRS_SCHEMA
from policies.grouping import GroupedRewards, within_group_pairs
from policies.named_registry import Registry


@dataclass(frozen=True)
class CandidatePairs:
    """Pairs as row indices into the scored table, with the prompt code of each pair."""

    chosen_rows: np.ndarray  # int64
    rejected_rows: np.ndarray  # int64
    prompt_codes: np.ndarray  # int64, non-decreasing

    @property
    def size(self) -> int:
        return int(self.chosen_rows.size)


PairBuilder = Callable[[GroupedRewards, float, np.random.Generator], CandidatePairs]

_BUILDERS: Registry[PairBuilder] = Registry("pair builder")
register_pair_builder = _BUILDERS.register
registered_pair_builders = _BUILDERS.names
get_pair_builder = _BUILDERS.get


def _first_row_of_each_prompt(grouped: GroupedRewards, *sort_keys: np.ndarray) -> np.ndarray:
    """Per prompt, the row that sorts first by `sort_keys` (most significant first)."""
    order = np.lexsort((*reversed(sort_keys), grouped.codes))
    firsts = np.cumsum(grouped.counts) - grouped.counts  # every prompt has at least one row
    return order[firsts]


def _keep_gaps_above(
    grouped: GroupedRewards, chosen: np.ndarray, rejected: np.ndarray, codes: np.ndarray, min_reward_gap: float
) -> CandidatePairs:
    gap = grouped.rewards[chosen] - grouped.rewards[rejected]
    keep = (gap > 0) & (gap > min_reward_gap)
    return CandidatePairs(chosen[keep], rejected[keep], codes[keep])


def _best_rows(grouped: GroupedRewards) -> np.ndarray:
    return _first_row_of_each_prompt(grouped, -grouped.rewards, grouped.sample_index)


@register_pair_builder("max_min")
def max_min(grouped: GroupedRewards, min_reward_gap: float, rng: np.random.Generator) -> CandidatePairs:
    """Best against worst response of each prompt (rng unused: deterministic)."""
    chosen = _best_rows(grouped)
    rejected = _first_row_of_each_prompt(grouped, grouped.rewards, grouped.sample_index)
    return _keep_gaps_above(grouped, chosen, rejected, np.arange(grouped.n_prompts), min_reward_gap)


@register_pair_builder("max_random")
def max_random(grouped: GroupedRewards, min_reward_gap: float, rng: np.random.Generator) -> CandidatePairs:
    """Best response against a uniformly drawn one that it beats by more than min_reward_gap."""
    chosen = _best_rows(grouped)
    gap_to_best = grouped.rewards[chosen][grouped.codes] - grouped.rewards
    eligible = (gap_to_best > 0) & (gap_to_best > min_reward_gap)
    # Eligible rows sort before the others; among them a uniform random key picks one.
    rejected = _first_row_of_each_prompt(grouped, ~eligible, rng.random(grouped.codes.size))
    return _keep_gaps_above(grouped, chosen, rejected, np.arange(grouped.n_prompts), min_reward_gap)


@register_pair_builder("all_pairs_above_margin")
def all_pairs_above_margin(grouped: GroupedRewards, min_reward_gap: float, rng: np.random.Generator) -> CandidatePairs:
    """Every within-prompt pair with a gap above min_reward_gap, largest gap first (rng unused)."""
    left, right = within_group_pairs(grouped.codes, grouped.counts)
    gap = grouped.rewards[left] - grouped.rewards[right]
    keep = (gap > 0) & (gap > min_reward_gap)
    left, right, gap = left[keep], right[keep], gap[keep]
    codes = grouped.codes[left]
    order = np.lexsort((grouped.sample_index[right], grouped.sample_index[left], -gap, codes))
    return CandidatePairs(left[order], right[order], codes[order])


def pairs_table(scored: pa.Table, chosen_rows: np.ndarray, rejected_rows: np.ndarray, pvar: np.ndarray) -> pa.Table:
    """The learner's pairs table (PAIRS_SCHEMA) for the given rows of `scored`.

    `pvar` is the statistic of each pair's prompt. Columns are cast to the contract's types (e.g.
    list<int64> token ids become list<int32>).
    """
    chosen = pa.array(np.asarray(chosen_rows, dtype=np.int64))
    rejected = pa.array(np.asarray(rejected_rows, dtype=np.int64))

    def take(column: str, rows: pa.Array, field: str) -> pa.ChunkedArray:
        return scored.column(column).take(rows).cast(PAIRS_SCHEMA.field(field).type)

    columns = {
        "prompt_id": take("prompt_id", chosen, "prompt_id"),
        "prompt_token_ids": take("prompt_token_ids", chosen, "prompt_token_ids"),
        "chosen_token_ids": take("response_token_ids", chosen, "chosen_token_ids"),
        "rejected_token_ids": take("response_token_ids", rejected, "rejected_token_ids"),
        "chosen_response": take("response", chosen, "chosen_response"),
        "rejected_response": take("response", rejected, "rejected_response"),
        "chosen_reward": take("reward", chosen, "chosen_reward"),
        "rejected_reward": take("reward", rejected, "rejected_reward"),
        "pvar": pa.chunked_array([pa.array(np.asarray(pvar, dtype=np.float64))], pa.float64()),
    }
    return pa.Table.from_arrays(list(columns.values()), schema=PAIRS_SCHEMA)
