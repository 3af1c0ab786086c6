"""Rows of a scored table grouped by prompt, as flat numpy arrays that vectorised code can use.

Every per-prompt computation in this package (PVar, reward statistics, pair building) works on the
same `GroupedRewards`: one integer code per row naming its prompt, so a grouped reduction is a
`np.bincount` and a within-prompt search is a `np.lexsort`, never a Python loop over prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from actors.contracts import GROUPING_COLUMNS


@dataclass(frozen=True)
class GroupedRewards:
    """A scored table's rewards with each row's prompt as an integer code."""

    prompt_ids: list[str]  # unique prompt ids, in order of first appearance
    codes: np.ndarray  # int64 per row: index into prompt_ids
    counts: np.ndarray  # int64 per prompt: number of responses
    rewards: np.ndarray  # float64 per row, all finite
    sample_index: np.ndarray  # int64 per row: the tie-break key (row position if the column is absent)

    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)


def group_rewards(scored: pa.Table) -> GroupedRewards:
    """Group `scored` (needs prompt_id and reward columns) by prompt_id.

    Raises ValueError for a missing column, a null prompt id, or a non-finite reward (naming the
    prompt): the driver drops non-finite rewards before selection, so one here is a bug upstream.
    """
    missing = [c for c in GROUPING_COLUMNS if c not in scored.column_names]
    if missing:
        raise ValueError(f"scored table lacks column(s) {missing}; it has {scored.column_names}")
    ids = scored.column("prompt_id").combine_chunks()
    if ids.null_count:
        raise ValueError(f"scored table has {ids.null_count} row(s) with a null prompt_id")
    encoded = pc.cast(ids, pa.string()).dictionary_encode()
    prompt_ids = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # Nulls become NaN here, so they are caught by the finiteness check below with their prompt id.
    rewards = scored.column("reward").to_numpy().astype(np.float64)
    check_finite(rewards, codes, prompt_ids)
    if "sample_index" in scored.column_names:
        sample_index = scored.column("sample_index").to_numpy().astype(np.int64)
    else:
        sample_index = np.arange(scored.num_rows, dtype=np.int64)
    counts = np.bincount(codes, minlength=len(prompt_ids)).astype(np.int64)
    return GroupedRewards(prompt_ids, codes, counts, rewards, sample_index)


def check_finite(rewards: np.ndarray, codes: np.ndarray, group_names: list[str] | None = None) -> None:
    """Raise ValueError naming the first prompt whose reward is NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(rewards))
    if bad.size:
        row = int(bad[0])
        group = int(codes[row])
        label = repr(group_names[group]) if group_names is not None else f"group {group}"
        raise ValueError(
            f"non-finite reward {rewards[row]} for prompt {label} (row {row}; {bad.size} such row(s)); "
            "rows with non-finite rewards must be dropped before selection"
        )


def within_group_pairs(codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (left, right) of every ordered pair of rows sharing a prompt, i == j included.

    Memory is O(sum over prompts of n_responses**2): fine for the tens of samples per prompt that
    online DPO draws.
    """
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.cumsum(counts) - counts
    # Each sorted row is paired with every row of its own group: repeat it group-size times, and
    # walk the group's block with an offset that restarts at 0 for every repeated row.
    repeats = counts[sorted_codes]
    left_pos = np.repeat(np.arange(codes.size), repeats)
    block_starts = np.repeat(np.cumsum(repeats) - repeats, repeats)
    offsets = np.arange(left_pos.size) - block_starts
    right_pos = starts[sorted_codes[left_pos]] + offsets
    return order[left_pos], order[right_pos]
