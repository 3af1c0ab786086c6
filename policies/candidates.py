"""What the built-in policies share: their options, the round's candidate pool, and assembly.

A policy (pvar, bottom_pvar, random, full, uniform_balance) differs only in the ORDER in which it
takes prompts and how many pairs it takes from each; everything else lives here: per-prompt
statistics (PVar in the configured form), every pair the pair builder can make, and turning
"prompts in priority order + pair counts" into a Selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from actors.contracts import PROMPT_STATS_SCHEMA, SELECTION_COLUMNS, ModelProbe
from policies.base import Selection, SelectionPolicy
from policies.grouping import GroupedRewards, group_rewards
from policies.pair_builders import CandidatePairs, PairBuilderOptions, get_pair_builder, pairs_table
from policies.selection_options import PoolOptions, PVarOptions
from policies.pvar import PVarSpec, implicit_beta_or, prompt_pvar


@dataclass(frozen=True)
class CandidatePool:
    """One round's prompts with their statistics and every pair the builder can make.

    `pvar_source` is the PVar form actually used: "reward" when the implicit form was asked for
    but every log-ratio was 0 (round 0, see policies/pvar.py).
    """

    scored: pa.Table
    grouped: GroupedRewards
    pvar: np.ndarray  # per prompt
    pairs: CandidatePairs
    pvar_source: str = "reward"

    def pairs_per_prompt(self) -> np.ndarray:
        return np.bincount(self.pairs.prompt_codes, minlength=self.grouped.n_prompts)


class PoolPolicy(SelectionPolicy):
    """What the built-in policies share: their options (policies/selection_options.py `PoolOptions`: the PVar
    statistic every policy fills, the pair builder), the round's candidate pool, and the prompt orders the
    PVar arms keep (top fraction, bottom fraction, threshold)."""

    Options = PoolOptions

    def __init__(self, options: PoolOptions, learner_beta: float = 0.1):
        # learner_beta: the implicit reward's beta where the options leave it to the learner (None).
        self.options, self.learner_beta = options, learner_beta
        o = options  # the PVar kernel's own checks, now rather than mid-run
        self.spec = PVarSpec(o.pvar_source, o.pvar_rewards, o.pvar_ensemble, o.tau,
                             implicit_beta_or(o.implicit_beta, learner_beta))
        self.builder_options = PairBuilderOptions(min_reward_gap=o.min_reward_gap, did_tau=o.did_tau)

    @property
    def pvar_reward(self) -> str:
        return self.options.pvar_rewards[0]

    @property
    def pvar_tau(self) -> float:
        return self.options.tau

    def build_pool(
        self,
        scored: pa.Table,
        rng: np.random.Generator,
        probe: ModelProbe | None = None,
        pair_builder: str | None = None,
    ) -> CandidatePool:
        """Statistics and candidate pairs of a non-empty scored table (`pair_builder` overrides the option)."""
        missing = [c for c in SELECTION_COLUMNS if c not in scored.column_names]
        if missing:
            raise ValueError(f"scored table lacks column(s) {missing} needed for selection; it has {scored.column_names}")
        grouped = group_rewards(scored)
        pvar = prompt_pvar(scored, grouped, self.spec, probe)
        builder = get_pair_builder(pair_builder or self.options.pair_builder)
        pairs = builder(grouped, self.builder_options, rng)
        return CandidatePool(scored, grouped, pvar.values, pairs, pvar.source)

    @staticmethod
    def top_pvar_prompts(pool: CandidatePool, rng: np.random.Generator, fraction: float) -> np.ndarray:
        """Codes of the top `fraction` of the prompts, highest PVar first, equal PVar in random order."""
        order = np.lexsort((rng.random(pool.grouped.n_prompts), -pool.pvar))
        return order[: kept_prompt_count(pool.grouped.n_prompts, fraction)]

    @staticmethod
    def bottom_pvar_prompts(pool: CandidatePool, rng: np.random.Generator, fraction: float) -> np.ndarray:
        """Codes of the lowest-PVar prompts among those that can make a pair, lowest first.

        As many as the top mode keeps at the same fraction (ceil(fraction * all prompts)), so the two arms
        train on equally many prompts; fewer when fewer prompts can make a pair. Why only pair-making prompts: the lowest PVars belong to prompts
        whose responses all tie (or lie within min_reward_gap); they give no pair, so keeping them
        would make the bottom arm train on almost nothing and the comparison would measure the pair
        count rather than the effect of low PVar. Equal PVar in random order.
        """
        n_prompts = pool.grouped.n_prompts
        can_pair = pool.pairs_per_prompt() > 0
        order = np.lexsort((rng.random(n_prompts), pool.pvar, ~can_pair))
        return order[: min(int(can_pair.sum()), kept_prompt_count(n_prompts, fraction))]

    @staticmethod
    def threshold_pvar_prompts(pool: CandidatePool, rng: np.random.Generator, threshold: float) -> np.ndarray:
        """Codes of every prompt with PVar >= pvar_threshold, highest first, equal PVar in random order."""
        order = np.lexsort((rng.random(pool.grouped.n_prompts), -pool.pvar))
        return order[pool.pvar[order] >= threshold]


def pvar_mode_prompts(options: PVarOptions, pool: CandidatePool, rng: np.random.Generator) -> np.ndarray:
    """The prompts pvar's mode keeps (PVarOptions: top fraction or threshold), in the order their pairs
    are taken: what pvar trains on, and what random matches the pair count of."""
    if options.pvar_mode == "top":
        return PoolPolicy.top_pvar_prompts(pool, rng, options.top_fraction)
    return PoolPolicy.threshold_pvar_prompts(pool, rng, options.pvar_threshold)


def check_budget(pair_budget: int) -> None:
    if isinstance(pair_budget, bool) or not isinstance(pair_budget, (int, np.integer)) or pair_budget < 0:
        raise ValueError(f"pair_budget must be a non-negative integer, got {pair_budget!r}")


def kept_prompt_count(n_prompts: int, top_fraction: float) -> int:
    """ceil(top_fraction * n_prompts), so any non-empty round keeps at least one prompt.

    Rounded to 9 decimals first so that float noise (0.3 * 10 = 3.0000000000000004) does not add one.
    """
    return min(n_prompts, math.ceil(round(top_fraction * n_prompts, 9)))


def select_in_order(
    pool: CandidatePool, prompt_order: np.ndarray, max_pairs: int, per_prompt: int | None = None
) -> Selection:
    """Take pairs prompt by prompt in `prompt_order` until `max_pairs`; prompts not listed give none.

    `per_prompt` caps the pairs taken from each prompt (its first ones in the builder's order).
    """
    n_prompts = pool.grouped.n_prompts
    rank = np.full(n_prompts, n_prompts, dtype=np.int64)  # n_prompts = "not in the order"
    rank[prompt_order] = np.arange(len(prompt_order))
    pair_rank = rank[pool.pairs.prompt_codes]
    listed = pair_rank < n_prompts
    if per_prompt is not None:
        listed &= position_within_prompt(pool.pairs.prompt_codes) < per_prompt
    listed = np.flatnonzero(listed)
    # Stable sort keeps each prompt's pairs in the builder's order of preference.
    taken = listed[np.argsort(pair_rank[listed], kind="stable")][:max_pairs]
    return selection_from_pairs(pool, taken)


def position_within_prompt(prompt_codes: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... along each run of equal codes (candidate pairs come grouped by prompt)."""
    if prompt_codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    run_starts = np.flatnonzero(np.r_[True, prompt_codes[1:] != prompt_codes[:-1]])
    run_lengths = np.diff(np.r_[run_starts, prompt_codes.size])
    return np.arange(prompt_codes.size) - np.repeat(run_starts, run_lengths)


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
    stats = prompt_stats_table(pool, pairs_selected, cluster, informativeness)
    return Selection(pairs=pairs, prompt_stats=stats, pvar_source=pool.pvar_source)


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
