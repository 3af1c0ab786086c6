"""BPO depth (docs/bpo.md): how informative each candidate pair is, and pairs per prompt.

Input: one gradient feature per candidate pair (the seeded projection of the pair's DPO gradient,
computed where the model is). The paper's exact scores and allocation rule are not public; the
choices below are documented defaults:

- Features are L2 normalised, so clustering compares optimisation DIRECTIONS, not gradient sizes.
  A pair with an all-zero feature (identical chosen and rejected gradients) has no direction and
  informativeness 0.
- k-means over the normalised features with `n_clusters` clusters (capped by the number of distinct
  features).
- informativeness(pair) = 1 / size(cluster) + ||f - centroid||. A cluster stands for one update
  direction; its members share it, so each is credited 1/size of it (a pair in a large cluster
  repeats what others already give). The distance to the centroid is the part of the pair's
  direction its cluster does not explain: new information on top. A singleton scores 1; a member of
  a tight cluster of 10 scores about 0.1.
- A prompt's informativeness is the sum over its candidate pairs. The budget is split across prompts
  in proportion to it (largest-remainder rounding, capped by each prompt's candidate count; what a
  cap frees is handed to the remaining prompts in the same proportion), or evenly
  (`allocation="uniform"`, the ablation of informativeness).
- Within a prompt, the most informative pairs are taken first (`within_prompt="top"`), or pairs are
  drawn without replacement with probability proportional to informativeness ("sample").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from policies.breadth import kmeans, l2_normalise

Allocation = Literal["proportional", "uniform"]
WithinPrompt = Literal["top", "sample"]


@dataclass(frozen=True)
class PairInformativeness:
    score: np.ndarray  # float64 per pair
    cluster: np.ndarray  # int64 per pair (-1 for a zero feature)


def pair_informativeness(features: np.ndarray, n_clusters: int, seed: int) -> PairInformativeness:
    """Informativeness of every pair from its gradient feature (n_pairs, dim); see the module docstring."""
    features = l2_normalise(features)
    n_pairs = len(features)
    score = np.zeros(n_pairs)
    cluster = np.full(n_pairs, -1, dtype=np.int64)
    directed = np.flatnonzero(np.linalg.norm(features, axis=1) > 0)
    if directed.size == 0:
        return PairInformativeness(score, cluster)
    points = features[directed]
    k = min(n_clusters, len(np.unique(points.round(9), axis=0)))
    model = kmeans(points, k, seed)
    sizes = np.bincount(model.labels_, minlength=k)
    residual = np.linalg.norm(points - model.cluster_centers_[model.labels_], axis=1)
    score[directed] = 1.0 / sizes[model.labels_] + residual
    cluster[directed] = model.labels_
    return PairInformativeness(score, cluster)


def allot_pairs(weights: np.ndarray, available: np.ndarray, budget: int, allocation: Allocation = "proportional") -> np.ndarray:
    """Pairs per prompt: shares of `budget` by `weights` (or evenly), never above `available`.

    Returns int64 counts summing to min(budget, available.sum()). Prompts with weight 0 get pairs
    only in the uniform allocation or when the weighted prompts cannot absorb the budget.
    """
    weights = np.asarray(weights, dtype=np.float64)
    available = np.asarray(available, dtype=np.int64)
    if allocation == "uniform":
        weights = (available > 0).astype(np.float64)
    elif allocation != "proportional":
        raise ValueError(f"allocation must be 'proportional' or 'uniform', got {allocation!r}")
    counts = np.zeros(len(available), dtype=np.int64)
    remaining = min(int(budget), int(available.sum()))
    # Each pass fills the open prompts in proportion; a capped prompt closes and frees its excess.
    # At most one pass per prompt, since every pass that leaves budget closes at least one prompt.
    while remaining > 0:
        open_ = counts < available
        share = np.where(open_, weights, 0.0)
        if share.sum() <= 0:  # only zero-weight prompts are left: spread evenly among them
            share = open_.astype(np.float64)
        ideal = remaining * share / share.sum()
        grant = np.minimum(np.floor(ideal).astype(np.int64), available - counts)
        leftover = remaining - int(grant.sum())
        if leftover > 0:
            # Largest remainders first (ties to the lower index), each within its own cap, and only
            # among prompts that have a share: a zero-weight prompt's remainder is 0, and it would
            # otherwise win a tie of zero remainders. What the shared prompts cannot take now goes
            # to them on the next pass, or to the zero-weight prompts once they are all capped.
            room = available - counts - grant
            order = np.lexsort((np.arange(len(ideal)), -(ideal - np.floor(ideal))))
            order = order[(room[order] > 0) & (share[order] > 0)][:leftover]
            grant[order] += 1
        counts += grant
        granted = int(grant.sum())
        if granted == 0:
            break
        remaining -= granted
    return counts


def pick_within_prompts(
    prompt_codes: np.ndarray, score: np.ndarray, counts: np.ndarray, rng: np.random.Generator, within_prompt: WithinPrompt = "top"
) -> np.ndarray:
    """Positions of the pairs taken: `counts[p]` pairs of each prompt p, by informativeness.

    "top": the highest scores first (ties to the earlier pair). "sample": without replacement with
    probability proportional to score (Gumbel top-k on log score; zero scores come last).
    """
    if within_prompt == "top":
        key = -score
    elif within_prompt == "sample":
        with np.errstate(divide="ignore"):
            key = -(np.log(score) + rng.gumbel(size=score.size))
    else:
        raise ValueError(f"within_prompt must be 'top' or 'sample', got {within_prompt!r}")
    order = np.lexsort((np.arange(score.size), key, prompt_codes))
    ordered_codes = prompt_codes[order]
    starts = np.searchsorted(ordered_codes, ordered_codes, side="left")
    rank_in_prompt = np.arange(order.size) - starts
    return np.sort(order[rank_in_prompt < counts[ordered_codes]])
