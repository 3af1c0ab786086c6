"""Pair builders by name: which (chosen, rejected) responses a prompt contributes, and the pairs table.

A builder sees every prompt of the round at once (a `GroupedRewards`) and returns row indices into
the scored table, vectorised with lexsort rather than a loop over prompts. Built-in builders:

- max_min: chosen = highest reward, rejected = lowest (docs/pvar.md, Pair builders); one pair
  per prompt. Ties go to the lowest sample_index on both sides, so the result is deterministic.
- max_random: chosen = highest reward; rejected drawn uniformly (with the rng) among the prompt's
  responses whose gap to the chosen one exceeds min_reward_gap; one pair per prompt.
- all_pairs_above_margin: every ordered pair whose reward gap exceeds min_reward_gap, largest gap
  first within a prompt (so a budget cut keeps the most decisive pairs).
- best_vs_rest: chosen = highest reward against every response it beats by more than
  min_reward_gap, largest gap first: several pairs per prompt (for depth), yet every chosen
  response is the prompt's best, so no pair teaches the policy to prefer a mediocre answer.
- did_rejected (docs/training-dynamics.md): chosen = highest reward (ties as max_min); rejected drawn among
  the responses the chosen one beats by more than min_reward_gap with probability proportional to
  exp(-r_i / did_tau); one pair per prompt. The paper's optimal rejected distribution is
  pi_ref(y) exp(-r(y)); the prompt's responses are samples of the generating policy, so reweighting
  them by exp(-r / did_tau) draws from it when that policy is the reference.

Every builder has the signature `(grouped, options: PairBuilderOptions, rng) -> CandidatePairs` and
drops pairs whose reward gap is <= options.min_reward_gap (and always those with no gap: a tie
carries no preference). Pairs come grouped by prompt, each prompt's pairs in the builder's order of
preference (the first are kept first when a budget cuts a prompt short).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from actors.contracts import PAIRS_SCHEMA
from actors.registry import Registry
from policies.grouping import GroupedRewards, within_group_pairs


@dataclass(frozen=True)
class CandidatePairs:
    """Pairs as row indices into the scored table, with the prompt code of each pair."""

    chosen_rows: np.ndarray  # int64
    rejected_rows: np.ndarray  # int64
    prompt_codes: np.ndarray  # int64, non-decreasing

    @property
    def size(self) -> int:
        return int(self.chosen_rows.size)


@dataclass(frozen=True)
class PairBuilderOptions:
    """What a builder may be tuned by; each builder reads the fields it uses.

    min_reward_gap: pairs whose reward gap is not above this are dropped (every builder).
    did_tau: temperature of did_rejected's exp(-r / did_tau) weights; small values almost always
    reject the lowest-reward response, large ones draw the rejected response nearly uniformly.
    """

    min_reward_gap: float = 0.0
    did_tau: float = 1.0

    def __post_init__(self) -> None:
        if not (self.min_reward_gap >= 0 and math.isfinite(self.min_reward_gap)):
            raise ValueError(f"min_reward_gap must be a finite number >= 0, got {self.min_reward_gap}")
        if not (self.did_tau > 0 and math.isfinite(self.did_tau)):
            raise ValueError(f"did_tau must be a finite number > 0, got {self.did_tau}")


PairBuilder = Callable[[GroupedRewards, PairBuilderOptions, np.random.Generator], CandidatePairs]

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


def _beaten_by_best(grouped: GroupedRewards, chosen: np.ndarray, min_reward_gap: float) -> np.ndarray:
    """Per row: does its prompt's chosen (best) response beat it by more than min_reward_gap?"""
    gap_to_best = grouped.rewards[chosen][grouped.codes] - grouped.rewards
    return (gap_to_best > 0) & (gap_to_best > min_reward_gap)


@register_pair_builder("max_min")
def max_min(grouped: GroupedRewards, options: PairBuilderOptions, rng: np.random.Generator) -> CandidatePairs:
    """Best against worst response of each prompt (rng unused: deterministic)."""
    chosen = _best_rows(grouped)
    rejected = _first_row_of_each_prompt(grouped, grouped.rewards, grouped.sample_index)
    return _keep_gaps_above(grouped, chosen, rejected, np.arange(grouped.n_prompts), options.min_reward_gap)


@register_pair_builder("max_random")
def max_random(grouped: GroupedRewards, options: PairBuilderOptions, rng: np.random.Generator) -> CandidatePairs:
    """Best response against a uniformly drawn one that it beats by more than min_reward_gap."""
    chosen = _best_rows(grouped)
    eligible = _beaten_by_best(grouped, chosen, options.min_reward_gap)
    # Eligible rows sort before the others; among them a uniform random key picks one.
    rejected = _first_row_of_each_prompt(grouped, ~eligible, rng.random(grouped.codes.size))
    return _keep_gaps_above(grouped, chosen, rejected, np.arange(grouped.n_prompts), options.min_reward_gap)


@register_pair_builder("all_pairs_above_margin")
def all_pairs_above_margin(
    grouped: GroupedRewards, options: PairBuilderOptions, rng: np.random.Generator
) -> CandidatePairs:
    """Every within-prompt pair with a gap above min_reward_gap, largest gap first (rng unused)."""
    left, right = within_group_pairs(grouped.codes, grouped.counts)
    gap = grouped.rewards[left] - grouped.rewards[right]
    keep = (gap > 0) & (gap > options.min_reward_gap)
    left, right, gap = left[keep], right[keep], gap[keep]
    codes = grouped.codes[left]
    order = np.lexsort((grouped.sample_index[right], grouped.sample_index[left], -gap, codes))
    return CandidatePairs(left[order], right[order], codes[order])


@register_pair_builder("best_vs_rest")
def best_vs_rest(grouped: GroupedRewards, options: PairBuilderOptions, rng: np.random.Generator) -> CandidatePairs:
    """The best response against each response it beats by more than min_reward_gap (rng unused)."""
    best = _best_rows(grouped)
    rejected = np.flatnonzero(_beaten_by_best(grouped, best, options.min_reward_gap))
    codes = grouped.codes[rejected]
    order = np.lexsort((grouped.sample_index[rejected], grouped.rewards[rejected], codes))
    return CandidatePairs(best[codes[order]], rejected[order], codes[order])


@register_pair_builder("did_rejected")
def did_rejected(grouped: GroupedRewards, options: PairBuilderOptions, rng: np.random.Generator) -> CandidatePairs:
    """Best response against one drawn with probability proportional to exp(-r / did_tau).

    Drawn among the responses the best one beats by more than min_reward_gap (never the chosen one
    itself, never a tie), with the Gumbel-max trick: argmax of log-weight + Gumbel noise is a draw
    from the normalised weights, for every prompt at once and without computing exp. The
    log-weights are shifted by their within-prompt maximum over eligible rows, so they are <= 0 and
    stay finite (at worst -inf, probability 0) whatever the reward scale and temperature.
    """
    chosen = _best_rows(grouped)
    eligible = _beaten_by_best(grouped, chosen, options.min_reward_gap)
    # -r/tau shifted by its within-prompt max is (lowest eligible reward - r) / tau.
    lowest = np.full(grouped.n_prompts, np.inf)
    np.minimum.at(lowest, grouped.codes[eligible], grouped.rewards[eligible])
    with np.errstate(invalid="ignore", over="ignore"):  # prompts without eligible rows: inf - inf
        log_weight = (lowest[grouped.codes] - grouped.rewards) / options.did_tau
    key = np.where(eligible, log_weight + rng.gumbel(size=grouped.codes.size), -np.inf)
    # Eligible rows first, then the largest key; prompts with no eligible row pick an ineligible one,
    # which _keep_gaps_above drops.
    rejected = _first_row_of_each_prompt(grouped, ~eligible, -key)
    return _keep_gaps_above(grouped, chosen, rejected, np.arange(grouped.n_prompts), options.min_reward_gap)


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
