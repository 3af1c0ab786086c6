"""The `bpo` policy (docs/bpo.md): fewer, representative prompts, each with more pairs, the
pairs chosen by how much new optimisation direction they bring.

One round, at a budget of B pairs:
1. Breadth: every prompt that can make a pair (with the depth pair builder, all pairs above the
   margin by default) is embedded (`probe.prompt_embeddings`), and k-means keeps
   ceil(B / pairs_per_prompt) representatives (policies/breadth.py).
2. Depth: every candidate pair of the representatives gets a gradient feature
   (`probe.pair_gradient_features`, the projected DPO gradient), k-means over the normalised
   features scores each pair's informativeness (policies/gradient_clustering.py).
3. The B pairs are allotted to the representatives in proportion to their summed informativeness
   and taken most informative first within each prompt.

`uniform_balance` (policies/baselines.py) is the same rebalancing with random prompts and equal
pairs per prompt, so bpo vs uniform_balance measures what clustering adds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.contracts import EMBEDDING_PROMPT_COLUMNS, ModelProbe
from policies.base import Selection
from policies.breadth import breadth_representatives
from policies.baselines import DepthPolicy
from policies.candidates import check_budget, selection_from_pairs
from policies.gradient_clustering import allot_pairs, pair_informativeness, pick_within_prompts
from policies.pair_builders import pairs_table
from policies.selection_options import BPOOptions
from policies.registry import register_policy

# prompt_embeddings gets EMBEDDING_PROMPT_COLUMNS, one row per prompt; `prompt` (the text before the
# chat template) is passed too when the table has it, since a sentence embedder should not see template tokens.


@register_policy("bpo")
class BPOPolicy(DepthPolicy):
    """Breadth by prompt-embedding k-means, depth by gradient-feature k-means, at `pair_budget` pairs
    (BPOOptions: pairs_per_prompt, depth_pair_builder, depth_clusters, allocation, within_prompt)."""

    Options = BPOOptions

    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, probe: ModelProbe | None = None
    ) -> Selection:
        check_budget(pair_budget)
        if scored.num_rows == 0:
            return Selection.empty()
        if probe is None:
            raise ValueError("the bpo policy needs the model probe (prompt embeddings and pair gradients); none was given")
        pool = self.build_pool(scored, rng, probe, pair_builder=self.options.depth_pair_builder)
        available = pool.pairs_per_prompt()
        n_prompts = pool.grouped.n_prompts
        seed = int(rng.integers(2**31))

        first_rows = np.unique(pool.grouped.codes, return_index=True)[1]  # codes are 0..n-1 in order
        columns = [*EMBEDDING_PROMPT_COLUMNS, *(["prompt"] if "prompt" in scored.column_names else [])]
        embeddings = probe.prompt_embeddings(scored.select(columns).take(pa.array(first_rows)))
        n_keep = self.kept_prompt_count(pair_budget)
        breadth = breadth_representatives(embeddings, available > 0, n_keep, seed)

        is_representative = np.zeros(n_prompts, dtype=bool)
        is_representative[breadth.representatives] = True
        candidates = np.flatnonzero(is_representative[pool.pairs.prompt_codes])
        informativeness = np.full(n_prompts, np.nan)
        if candidates.size == 0:
            return selection_from_pairs(pool, candidates, breadth.cluster, _nan_to_none(informativeness))
        candidate_pairs = pairs_table(
            scored, pool.pairs.chosen_rows[candidates], pool.pairs.rejected_rows[candidates], pool.pvar[pool.pairs.prompt_codes[candidates]]
        )
        depth = pair_informativeness(probe.pair_gradient_features(candidate_pairs), self.options.depth_clusters, seed)
        codes = pool.pairs.prompt_codes[candidates]
        prompt_score = np.bincount(codes, weights=depth.score, minlength=n_prompts)
        informativeness[breadth.representatives] = prompt_score[breadth.representatives]
        counts = allot_pairs(np.where(is_representative, prompt_score, 0.0), np.where(is_representative, available, 0),
                             pair_budget, self.options.allocation)
        taken = candidates[pick_within_prompts(codes, depth.score, counts, rng, self.options.within_prompt)]
        return selection_from_pairs(pool, taken, breadth.cluster, _nan_to_none(informativeness))


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    """Prompts that were not scored get a null in the statistics table, not a NaN that looks computed."""
    return [None if np.isnan(v) else float(v) for v in values]
