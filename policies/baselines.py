"""The comparison arms that do not rank prompts: `full` (no selection) and `uniform_balance` (BPO's
uniform balancing). The PVar-based arms live with pvar (policies/pvar_policy.py: bottom_pvar) and in
policies/random_policy.py.

full: every prompt, every pair the pair builder makes from it (with min_reward_gap). It ignores
`pair_budget` on purpose: the arm measures what selection gives up, so capping it would turn it
into another selection rule (which prompts survive the cap?). Expect more pairs, and so more
optimizer steps, per round than the budgeted policies. Pairs come prompt by prompt in order of
first appearance.

uniform_balance (docs/bpo.md): at the pair budget it keeps ceil(pair_budget /
pairs_per_prompt) prompts drawn uniformly at random and gives each the same number of pairs,
`pairs_per_prompt`: "less breadth, more depth" with no notion of which prompts or pairs are
informative, so bpo vs uniform_balance measures what BPO's clustering adds.
- Pairs come from `depth_pair_builder` (default all_pairs_above_margin), not `pair_builder`: the
  default max_min makes one pair per prompt, which cannot give a prompt depth. Within a prompt the
  first `pairs_per_prompt` pairs in the builder's order are taken (for all_pairs_above_margin, the
  largest reward gaps), as every policy here cuts a prompt short.
- Drawn among prompts that can make a pair, those that can make at least `pairs_per_prompt` pairs
  first (each group in random order): a prompt with fewer pairs cannot receive the same depth, so it
  is used only when there are not enough full-depth prompts, and then gives all the pairs it has.
- Total at most pair_budget: when pair_budget is not a multiple of pairs_per_prompt the last prompt
  drawn gets the remainder. With too few pair-making prompts the round trains on fewer pairs (never
  more than pairs_per_prompt from one prompt).

Both fill the `pvar` statistic (in the configured form, so pvar_source "implicit" needs the model
probe here too) so reports compare every arm on the same columns; they take no PVar ranking option
(policies/selection_options.py).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from actors.contracts import ModelProbe
from policies.base import Selection
from policies.candidates import PoolPolicy, check_budget, select_in_order, selection_from_pairs
from policies.selection_options import DepthOptions
from policies.registry import register_policy


@register_policy("full")
class FullPolicy(PoolPolicy):
    """Every candidate pair of every prompt; pair_budget is validated but not applied."""

    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, probe: ModelProbe | None = None
    ) -> Selection:
        check_budget(pair_budget)
        if scored.num_rows == 0:
            return Selection.empty()
        pool = self.build_pool(scored, rng, probe)
        return selection_from_pairs(pool, np.arange(pool.pairs.size))


class DepthPolicy(PoolPolicy):
    """The "fewer prompts, more pairs each" policies (uniform_balance, bpo): DepthOptions."""

    Options = DepthOptions

    def kept_prompt_count(self, pair_budget: int) -> int:
        return math.ceil(pair_budget / self.options.pairs_per_prompt)


@register_policy("uniform_balance")
class UniformBalancePolicy(DepthPolicy):
    """ceil(pair_budget / pairs_per_prompt) random prompts, pairs_per_prompt pairs each."""

    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, probe: ModelProbe | None = None
    ) -> Selection:
        check_budget(pair_budget)
        if scored.num_rows == 0:
            return Selection.empty()
        pool = self.build_pool(scored, rng, probe, pair_builder=self.options.depth_pair_builder)
        available = pool.pairs_per_prompt()
        can_pair = np.flatnonzero(available > 0)
        # Full-depth prompts first, each group in random order.
        order = can_pair[np.lexsort((rng.random(can_pair.size), available[can_pair] < self.options.pairs_per_prompt))]
        kept = order[: self.kept_prompt_count(pair_budget)]
        return select_in_order(pool, kept, pair_budget, per_prompt=self.options.pairs_per_prompt)
