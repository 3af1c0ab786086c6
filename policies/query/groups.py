"""Labels in prompt groups: the one rule every query selector spends its budget by.

A pair needs two labelled responses of the same prompt, so labels are spent a prompt group at a time:
the selector orders the prompts, and `take_groups` walks that order taking each prompt's responses
whole while the budget allows; when a group no longer fits, and at least 2 responses of budget remain,
it labels that many responses of the next group (its first rows: a prompt's samples are exchangeable)
and stops. Groups of a single response (a prompt whose other samples were dropped) are skipped: one
label alone makes no pair. With k responses per prompt and budget B that is floor(B / k) whole groups,
plus one partial group of B mod k responses when B mod k >= 2.
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
