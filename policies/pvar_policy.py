"""The `pvar` policy (papers.md section 1): train on the prompts whose responses disagree most.

Per prompt it computes PVar, keeps the top `top_fraction` of the round's prompts (ceil, at least
one; equal PVar ordered by the rng), builds pairs with the pair builder, and when those pairs exceed
`pair_budget` keeps the pairs of the highest-PVar prompts first.

When the kept prompts yield fewer pairs than the budget (few prompts, ties, a large min_reward_gap),
the round trains on fewer pairs: the policy never pads with lower-PVar prompts, because the point of
the policy is that the rest carry little signal. Prompts outside the top fraction are never used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from policies.base import Selection, SelectionFeatures
from policies.candidates import PoolPolicy, check_budget, select_in_order
from policies.registry import register_policy


@register_policy("pvar")
@dataclass(frozen=True)
class PVarPolicy(PoolPolicy):
    """Top-`top_fraction` prompts by preference variance, highest first, at most `pair_budget` pairs."""

    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, features: SelectionFeatures | None = None
    ) -> Selection:
        check_budget(pair_budget)
        if scored.num_rows == 0:
            return Selection.empty()
        pool = self.build_pool(scored, rng)
        return select_in_order(pool, self.top_pvar_prompts(pool, rng), pair_budget)
