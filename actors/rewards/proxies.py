"""Proxy rewards: cheap, noisier stand-ins for a task's labeller, used only to choose what to label.

In the papers a small selection reward model scores every response and only the chosen ones go to the
costly labeller. These two play that part for the built-in tasks, so query selection has something
informative but imperfect to work from (`role: proxy` in `scoring.rewards`; docs/labels.md):

- `builtin_task_proxy`: the built-in task's graded reward plus deterministic noise, uniform in
  [-PROXY_NOISE, +PROXY_NOISE], drawn from a hash of (prompt_id, response). The same response to the
  same prompt always gets the same score (a retried scorer chunk, a resumed round), yet the noise is
  large next to one item's credit (1/4 for a four-item answer), so it often misorders close responses.
- `builtin_task_proxy_noiseNNN` (NNN = 010, 060, 100): the same with noise of half-width NNN/100, one
  realisation scaled (the same draw per response at every width), so a sweep over them varies only the
  proxy's quality: where active selection's saving starts and ends (docs/label-efficiency.md).
- `builtin_task_length_proxy`: the graded reward plus an error that follows the response's length, not
  its label: +LENGTH_BIAS for long responses, -LENGTH_BIAS for short ones (tanh around LENGTH_CENTRE
  words). A proxy biased the way learned reward models often are (they favour longer answers).
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
# The noise sweep's other half-widths: registered as builtin_task_proxy_noise010 etc. (actors/rewards/programmatic.py).
NOISE_SWEEP = (0.1, 0.6, 1.0)
# The length-biased proxy: its error reaches +-LENGTH_BIAS, centred on a response of LENGTH_CENTRE words (the
# built-in task's answers name the operation and give 2 to 8 digits: 3 to 9 words), LENGTH_SCALE words wide.
LENGTH_BIAS, LENGTH_CENTRE, LENGTH_SCALE = 0.3, 6.0, 2.0


def stable_uniform(prompt_ids: list, responses: list) -> np.ndarray:
    """One number in [0, 1) per row, a function of (prompt_id, response) only: seeded, never drawn."""
    out = np.empty(len(responses), dtype=np.float64)
    for row, (pid, response) in enumerate(zip(prompt_ids, responses, strict=True)):
        digest = hashlib.blake2b(f"{pid}\x00{response or ''}".encode(), digest_size=8).digest()
        out[row] = int.from_bytes(digest, "little") / 2.0**64
    return out


def noisy_proxy(half_width: float):
    """The built-in task's graded reward plus uniform noise in [-half_width, half_width], seeded per response."""

    def reward(batch: pa.Table) -> np.ndarray:
        graded = builtin_task_reward(batch)
        ids = batch.column("prompt_id").to_pylist() if "prompt_id" in batch.column_names else [None] * batch.num_rows
        return graded + (2.0 * stable_uniform(ids, batch.column("response").to_pylist()) - 1.0) * half_width

    reward.__doc__ = f"The built-in task's graded reward plus uniform noise of half-width {half_width}, fixed per response."
    return reward


builtin_task_proxy_reward = noisy_proxy(PROXY_NOISE)


def noise_sweep_name(half_width: float) -> str:
    """The registered name of the noise sweep's proxy of this half-width: builtin_task_proxy_noise060."""
    return f"builtin_task_proxy_noise{round(half_width * 100):03d}"


def builtin_task_length_proxy_reward(batch: pa.Table) -> np.ndarray:
    """The graded reward plus LENGTH_BIAS * tanh((words - LENGTH_CENTRE) / LENGTH_SCALE): wrong by the length."""
    graded = builtin_task_reward(batch)
    words = np.array([len((response or "").split()) for response in batch.column("response").to_pylist()],
                     dtype=np.float64)
    return graded + LENGTH_BIAS * np.tanh((words - LENGTH_CENTRE) / LENGTH_SCALE)


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
