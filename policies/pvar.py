"""Preference variance (PVar), papers.md section 1: how much a prompt's responses disagree.

For a prompt with rewards r_1..r_n (n >= 2), p_ij = sigma((r_i - r_j) / tau) and
    PVar = 1 / (n (n - 1)) * sum over ordered pairs i != j of (p_ij - 1/2)**2,
which equals numpy's variance of the p_ij (their mean is exactly 1/2 since p_ij + p_ji = 1).

Behaviour at the edges (documented, tested):
- fewer than 2 responses: nothing to compare, PVar is 0.0;
- tied rewards give p_ij = 1/2 and contribute 0, so identical rewards give PVar 0.0;
- PVar depends only on reward differences: shifting every reward of a prompt changes nothing;
- NaN or infinite rewards are never expected (the driver drops them) and raise ValueError naming
  the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from policies.grouping import check_finite, group_rewards, within_group_pairs


def _centred_preference_squared(scaled_gap: np.ndarray) -> np.ndarray:
    """(sigma(x) - 1/2)**2 computed as tanh(x/2)**2 / 4: the same value, without cancellation."""
    return np.tanh(scaled_gap / 2.0) ** 2 / 4.0


def grouped_preference_variance(
    codes: np.ndarray,
    rewards: np.ndarray,
    tau: float = 1.0,
    n_groups: int | None = None,
    group_names: Sequence[str] | None = None,
) -> np.ndarray:
    """PVar of every group at once; `codes[k]` is the group (0..n_groups-1) of `rewards[k]`.

    Vectorised over all within-group pairs. Returns a float64 array of length n_groups (groups
    with fewer than 2 rows get 0.0). `group_names` only improves the non-finite-reward error.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    codes = np.asarray(codes, dtype=np.int64)
    rewards = np.asarray(rewards, dtype=np.float64)
    if codes.shape != rewards.shape or codes.ndim != 1:
        raise ValueError(f"codes and rewards must be 1-D of equal length, got {codes.shape} and {rewards.shape}")
    if n_groups is None:
        n_groups = int(codes.max()) + 1 if codes.size else 0
    if codes.size and (codes.min() < 0 or codes.max() >= n_groups):
        raise ValueError(f"group codes must lie in [0, {n_groups})")
    check_finite(rewards, codes, list(group_names) if group_names is not None else None)
    counts = np.bincount(codes, minlength=n_groups)
    left, right = within_group_pairs(codes, counts)
    # The i == j terms have a zero gap and contribute exactly 0, so they need no masking.
    contributions = _centred_preference_squared((rewards[left] - rewards[right]) / tau)
    sums = np.bincount(codes[left], weights=contributions, minlength=n_groups)
    ordered_pairs = (counts * (counts - 1)).astype(np.float64)
    return np.divide(sums, ordered_pairs, out=np.zeros(n_groups), where=ordered_pairs > 0)


def preference_variance(rewards: np.ndarray, tau: float = 1.0) -> float:
    """PVar of one prompt's response rewards (0.0 for fewer than 2 responses)."""
    rewards = np.asarray(rewards, dtype=np.float64).ravel()
    codes = np.zeros(rewards.size, dtype=np.int64)
    return float(grouped_preference_variance(codes, rewards, tau, n_groups=1)[0])


def preference_variance_by_prompt(scored: pa.Table, tau: float = 1.0) -> pa.Table:
    """PVar of every prompt of a scored table: columns prompt_id, n_responses, pvar.

    Prompts appear in order of first appearance in `scored`.
    """
    if scored.num_rows == 0:
        return pa.table(
            {"prompt_id": pa.array([], pa.string()), "n_responses": pa.array([], pa.int64()), "pvar": pa.array([], pa.float64())}
        )
    grouped = group_rewards(scored)
    pvar = grouped_preference_variance(grouped.codes, grouped.rewards, tau, grouped.n_prompts, grouped.prompt_ids)
    return pa.table(
        {
            "prompt_id": pa.array(grouped.prompt_ids, pa.string()),
            "n_responses": pa.array(grouped.counts, pa.int64()),
            "pvar": pa.array(pvar, pa.float64()),
        }
    )
