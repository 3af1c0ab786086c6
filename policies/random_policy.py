"""The `random` baseline: random prompts, trained on exactly as many pairs as `pvar` would train on.

What makes the pvar-vs-random ablation fair (the only difference must be WHICH prompts):
- Same pair count. random takes min(pair_budget, the pairs the prompts pvar would keep can make),
  computed from the same statistics and the same options (its Options are pvar's: pvar_mode,
  top_fraction, pvar_threshold and the PVar form), so both train on the same number of pairs (and the
  same number of optimizer steps). Otherwise pvar, which never pads, could lose simply by training less, or
  random could win by training more. Computing that count needs pvar's statistic, so with
  pvar_source "implicit" random needs the model probe too.
- Same pair builder and min_reward_gap, so pairs are made the same way in both arms.
- Drawn among prompts that can make a pair. A prompt whose responses all tie gives no pair under
  either policy; drawing it would waste a draw and leave random short of pairs, which would measure
  the pair count again instead of the prompt choice. Conditioning on "can make a pair" is a mild
  selection of its own (it excludes PVar = 0 prompts), stated here so reports can say so.
- Prompts are taken in a uniformly random order (rng permutation) and all of a prompt's pairs are
  taken before the next prompt, as pvar does, so pairs per prompt match too.
"""

from __future__ import annotations


import numpy as np
import pyarrow as pa

from actors.contracts import ModelProbe
from policies.base import Selection
from policies.candidates import PoolPolicy, check_budget, pvar_mode_prompts, select_in_order
from policies.selection_options import PVarOptions
from policies.registry import register_policy


@register_policy("random")
class RandomPolicy(PoolPolicy):
    """Random pair-making prompts, as many pairs as `pvar` with the same options would select."""

    Options = PVarOptions

    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, probe: ModelProbe | None = None
    ) -> Selection:
        check_budget(pair_budget)
        if scored.num_rows == 0:
            return Selection.empty()
        pool = self.build_pool(scored, rng, probe)
        pairs_per_prompt = pool.pairs_per_prompt()
        pvar_pair_count = int(pairs_per_prompt[pvar_mode_prompts(self.options, pool, rng)].sum())
        prompt_order = rng.permutation(np.flatnonzero(pairs_per_prompt > 0))
        return select_in_order(pool, prompt_order, min(pair_budget, pvar_pair_count))
