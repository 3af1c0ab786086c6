"""The `pvar` policy (docs/pvar.md) and its `bottom_pvar` arm: rank prompts by preference variance.

Per prompt it computes PVar in the configured form (reward, reward ensemble or implicit, see
policies/pvar.py), keeps prompts by `pvar_mode` (policies/selection_options.py):
- top: the top `top_fraction` of the round's prompts (ceil, at least one), highest PVar first;
- threshold: every prompt with PVar >= `pvar_threshold`, highest first;
and `bottom_pvar` keeps `bottom_fraction` of them, lowest PVar first, among prompts that can make a pair
(the paper's bottom-k% baseline; why pair-making only is explained in PoolPolicy.bottom_pvar_prompts);
equal PVar ordered by the rng. It builds pairs with the pair builder and, when those pairs exceed
`pair_budget`, keeps the pairs of the prompts that come first.

When the kept prompts yield fewer pairs than the budget (few prompts, ties, a large min_reward_gap),
the round trains on fewer pairs: the policy never pads with other prompts, because the point of the
policy is that the rest carry little signal (or, for bottom, that only low-PVar prompts are used).

`bottom_pvar` is pvar with the other order; its options have no pvar_mode, so nothing can turn it back.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.contracts import ModelProbe
from policies.base import Selection
from policies.candidates import PoolPolicy, check_budget, pvar_mode_prompts, select_in_order
from policies.selection_options import BottomPVarOptions, PVarOptions
from policies.registry import register_policy


@register_policy("pvar")
class PVarPolicy(PoolPolicy):
    """Prompts kept by `pvar_mode` (top fraction or threshold on PVar), at most `pair_budget` pairs."""

    Options = PVarOptions

    def kept_prompts(self, pool, rng: np.random.Generator) -> np.ndarray:
        """The prompts the options keep, in the order their pairs are taken."""
        return pvar_mode_prompts(self.options, pool, rng)

    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, probe: ModelProbe | None = None
    ) -> Selection:
        check_budget(pair_budget)
        if scored.num_rows == 0:
            return Selection.empty()
        pool = self.build_pool(scored, rng, probe)
        return select_in_order(pool, self.kept_prompts(pool, rng), pair_budget)


@register_policy("bottom_pvar")
class BottomPVarPolicy(PVarPolicy):
    """The lowest-PVar pair-making prompts (`bottom_fraction` of the round's), lowest first."""

    Options = BottomPVarOptions

    def kept_prompts(self, pool, rng: np.random.Generator) -> np.ndarray:
        return self.bottom_pvar_prompts(pool, rng, self.options.bottom_fraction)
