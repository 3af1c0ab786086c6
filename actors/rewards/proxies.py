"""Proxy rewards: cheap, noisier stand-ins for a task's labeller, used only to choose what to label.

In the papers a small selection reward model scores every response and only the chosen ones go to the
costly labeller. These two play that part for the built-in tasks, so query selection has something
informative but imperfect to work from (`role: proxy` in `scoring.rewards`; docs/labels.md):

- `builtin_task_proxy`: the built-in task's graded reward plus deterministic noise, uniform in
  [-PROXY_NOISE, +PROXY_NOISE], drawn from a hash of (prompt_id, response). The same response to the
  same prompt always gets the same score (a retried scorer chunk, a resumed round), yet the noise is
  large next to one item's credit (1/4 for a four-item answer), so it often misorders close responses.
- `ifeval_proxy`: checks only the first of each prompt's IFEval instructions (strict): 1.0 when the
  response follows it, else 0.0 (NaN without instructions, as `ifeval`). One checker instead of up
  to three, and blind to the others.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from actors.contracts import InputError
from actors.rewards.builtin_task import builtin_task_reward
from actors.rewards.ifeval import (
    IDS_COLUMN,
    KWARGS_COLUMN,
    InstructionError,
    follows,
    require_ifeval_columns,
    row_checkers,
)

# Half-width of the builtin_task_proxy's uniform noise, in reward units (the reward lies in [0, 1]).
PROXY_NOISE = 0.3


def stable_uniform(prompt_ids: list, responses: list) -> np.ndarray:
    """One number in [0, 1) per row, a function of (prompt_id, response) only: seeded, never drawn."""
    out = np.empty(len(responses), dtype=np.float64)
    for row, (pid, response) in enumerate(zip(prompt_ids, responses, strict=True)):
        digest = hashlib.blake2b(f"{pid}\x00{response or ''}".encode(), digest_size=8).digest()
        out[row] = int.from_bytes(digest, "little") / 2.0**64
    return out


def builtin_task_proxy_reward(batch: pa.Table) -> np.ndarray:
    """The built-in task's graded reward plus uniform noise in [-PROXY_NOISE, PROXY_NOISE], seeded per response."""
    exact = builtin_task_reward(batch)
    ids = batch.column("prompt_id").to_pylist() if "prompt_id" in batch.column_names else [None] * batch.num_rows
    noise = (2.0 * stable_uniform(ids, batch.column("response").to_pylist()) - 1.0) * PROXY_NOISE
    return exact + noise


def ifeval_proxy_reward(batch: pa.Table) -> np.ndarray:
    """1.0 where the response follows its prompt's first IFEval instruction (strict), else 0.0."""
    require_ifeval_columns(batch, "the scored batch")
    ids = batch.column(IDS_COLUMN).to_pylist()
    kwargs = batch.column(KWARGS_COLUMN).to_pylist()
    responses = batch.column("response").to_pylist()
    values = np.full(batch.num_rows, np.nan, dtype=np.float64)
    for row, (row_ids, row_kwargs, response) in enumerate(zip(ids, kwargs, responses, strict=True)):
        try:
            checkers = row_checkers(row_ids, row_kwargs)
        except InstructionError as error:
            raise InputError(f"the ifeval_proxy reward, batch row {row + 1}: {error}") from None
        if checkers:
            strict, _ = follows(response or "", checkers[:1])
            values[row] = float(strict[0])
    return values
