"""Labels in prompt groups: the one rule every query selector spends its budget by.

A pair needs two labelled responses of the same prompt, so labels are spent a prompt group at a time:
the selector orders the prompts, and `take_groups` walks that order taking each prompt's responses
whole while the budget allows; when a group no longer fits, and at least 2 responses of budget remain,
it labels that many responses of the next group (its first rows: a prompt's samples are exchangeable)
and stops. Groups of a single response (a prompt whose other samples were dropped) are skipped: one
label alone makes no pair. With k responses per prompt and budget B that is floor(B / k) whole groups,
plus one partial group of B mod k responses when B mod k >= 2.

`trim_groups` cuts each group to at most n responses before that walk (`labelling.query.responses_per_group`):
the extremes of a per-response score (the selector's own: proxy, implicit reward), or a random subset
when there is none. A pair needs two labels, not k; labelled at the extremes of a good proxy, those two
are likely the pair the whole group's labels would have made, so the same budget pays for k/2 times the
pairs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def prompt_groups(rollouts: pa.Table) -> list[np.ndarray]:
    """Row indices of each prompt's responses, prompts in order of first appearance."""
    ids = rollouts.column("prompt_id").to_pylist()
    rows: dict[str, list[int]] = {}
    for row, pid in enumerate(ids):
        rows.setdefault(pid, []).append(row)
    return [np.asarray(r, dtype=np.int64) for r in rows.values()]


def take_groups(groups: list[np.ndarray], order, num_rows: int, max_responses: int | None) -> np.ndarray:
    """The label mask: `groups` (row indices per prompt) taken in `order` (indices into `groups`) under
    the budget of `max_responses` responses (None: every group whole)."""
    mask = np.zeros(num_rows, dtype=bool)
    left = np.inf if max_responses is None else int(max_responses)
    for index in order:
        rows = groups[index]
        if rows.size < 2:
            continue
        if rows.size <= left:
            mask[rows] = True
            left -= rows.size
        elif left >= 2:
            mask[rows[: int(left)]] = True
            left = 0
        if left < 2:
            break
    return mask


def spread_exceeds(rewards: np.ndarray, tolerance: float) -> bool:
    """True when at least two finite rewards differ by more than `tolerance`: the group can make a pair."""
    finite = rewards[np.isfinite(rewards)]
    return finite.size >= 2 and float(finite.max() - finite.min()) > tolerance


def informative_prompts(scored: pa.Table, tolerance: float) -> int:
    """Prompts of `scored` (labelled rows with `reward`) whose rewards do not tie: those a pair can be made of."""
    if scored.num_rows == 0:
        return 0
    rewards = scored.column("reward").to_numpy(zero_copy_only=False).astype(np.float64)
    return sum(spread_exceeds(rewards[rows], tolerance) for rows in prompt_groups(scored))


def extremes(scores: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ceil(n/2) highest and floor(n/2) lowest of `scores`, ties in a random order; a
    non-finite score counts as the finite ones' mean (it says nothing, so it is never an extreme)."""
    finite = np.isfinite(scores)
    fill = float(scores[finite].mean()) if finite.any() else 0.0
    order = np.lexsort((rng.random(scores.size), -np.where(finite, scores, fill)))
    top = (n + 1) // 2
    return np.sort(np.concatenate([order[:top], order[scores.size - (n - top):]]))


def trim_groups(groups: list[np.ndarray], n: int | None, rng: np.random.Generator,
                row_scores: np.ndarray | None = None) -> list[np.ndarray]:
    """Each group cut to at most `n` rows (None: unchanged): the extremes of `row_scores` (per row of the
    table), or `n` rows drawn from `rng` when `row_scores` is None."""
    if n is None:
        return groups
    trimmed = []
    for rows in groups:
        if rows.size <= n:
            trimmed.append(rows)
        elif row_scores is None:
            trimmed.append(np.sort(rng.choice(rows, size=n, replace=False)))
        else:
            trimmed.append(rows[extremes(row_scores[rows], n, rng)])
    return trimmed
