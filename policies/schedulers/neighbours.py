"""Borrowed history for prompts never visited: a tie streak predicted from their nearest visited neighbours.

GRESO's rule can only skip a prompt after it has been rolled out and tied; in a pool's first epoch there is
nothing to skip. Prompts alike in text tend to be alike in difficulty (the same kind of task, the same
instruction), so an unvisited prompt borrows the streak of the visited prompts nearest to it in embedding
space:
    borrowed = min(tied_streak of its `k` nearest visited prompts), when all `k` have cosine similarity of
    at least `min_similarity`; else 0 (no prediction, never skipped).
The minimum is the cautious choice: one neighbour that taught something at its last visit is enough to roll
the prompt out. The borrowed streak is used only to decide the skip; the prompt's own history starts at its
first visit.

The vectors come from the driver (`SchedulerContext.embed`, actors/kernels/prompt_embeddings.py
`text_vectors`, in the space `data.scheduler.neighbour_source` names: MiniLM sentence embeddings or hashed
character n-grams); this module only compares them.
"""

from __future__ import annotations

import numpy as np


def borrowed_streaks(vectors: np.ndarray, visited: np.ndarray, streaks: np.ndarray, k: int,
                     min_similarity: float) -> np.ndarray:
    """int64 (n,): for each unvisited row, the smallest tied streak among its `k` most similar visited rows
    when all of them are at least `min_similarity` alike (cosine), else 0; 0 for visited rows."""
    visited = np.asarray(visited, dtype=bool)
    streaks = np.asarray(streaks, dtype=np.int64)
    out = np.zeros(len(visited), dtype=np.int64)
    unvisited = np.flatnonzero(~visited)
    seen = np.flatnonzero(visited)
    if k <= 0 or seen.size < k or unvisited.size == 0:
        return out
    similarity = vectors[unvisited] @ vectors[seen].T                      # (unvisited, seen)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]            # the k most similar, any order
    near_similarity = np.take_along_axis(similarity, nearest, axis=1)
    borrowed = streaks[seen][nearest].min(axis=1)
    out[unvisited] = np.where(near_similarity.min(axis=1) >= min_similarity, borrowed, 0)
    return out
