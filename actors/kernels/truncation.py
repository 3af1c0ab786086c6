"""Length limits of the learner's pairs: truncate prompts and responses, drop pairs that still do not fit.

`learner.max_prompt_tokens`, `learner.max_response_tokens`, `learner.max_length` (None each: no limit). Applied
to the round's whole pairs table before it is sharded, the same on every rank, so every rank trains on the
same pairs and computes the same counts (no all-reduce needed). In order:

1. a prompt longer than max_prompt_tokens keeps its LAST max_prompt_tokens tokens: the end of a prompt
   (the question, the assistant-turn marker the responses follow) matters most to the responses, the start
   (system text, a BOS token) least; TRL truncates prompts the same way;
2. a chosen or rejected response longer than max_response_tokens keeps its FIRST tokens (a response is
   scored from its start, so its prefix is still what the policy would have generated);
3. a pair whose prompt + longer response still exceeds max_length (the longest sequence the model sees for
   that pair: the rejected response restarts its positions after the prompt, actors/kernels/logprobs.py)
   is dropped from the round: it is neither in the reference pass nor in any step.

Every pass of the round (reference, training, end-of-round) sees the truncated tokens, so the DPO
log-ratios compare like with like. Pure Python, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The learner's round metrics (metrics.json `learner`) that count what the limits did to the round's pairs.
TRUNCATION_KEYS = ("prompts_truncated", "responses_truncated", "pairs_dropped")


@dataclass(frozen=True)
class Truncated:
    """The pairs that remain, with their truncated tokens, and what the limits did."""

    prompts: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]
    kept: list[int]  # each remaining pair's row in the round's table
    prompts_truncated: int  # pairs whose prompt was cut (dropped pairs included)
    responses_truncated: int  # responses cut, chosen and rejected counted apart (dropped pairs included)
    pairs_dropped: int  # pairs longer than max_length after the cuts

    def counts(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in TRUNCATION_KEYS}


def truncate_pairs(prompts: Sequence[Sequence[int]], chosen: Sequence[Sequence[int]],
                   rejected: Sequence[Sequence[int]], max_prompt_tokens: int | None = None,
                   max_response_tokens: int | None = None, max_length: int | None = None) -> Truncated:
    """Apply the limits (None: none) in the order of the module docstring."""
    if max_prompt_tokens is None and max_response_tokens is None and max_length is None:
        return Truncated(list(prompts), list(chosen), list(rejected), list(range(len(prompts))), 0, 0, 0)
    out_p, out_c, out_r, kept = [], [], [], []
    cut_prompts = cut_responses = dropped = 0
    for row, (p, c, r) in enumerate(zip(prompts, chosen, rejected, strict=True)):
        p, c, r = list(p), list(c), list(r)
        if max_prompt_tokens is not None and len(p) > max_prompt_tokens:
            p = p[-max_prompt_tokens:]  # keep the end
            cut_prompts += 1
        if max_response_tokens is not None:
            for response in (c, r):
                if len(response) > max_response_tokens:
                    del response[max_response_tokens:]  # keep the start
                    cut_responses += 1
        if max_length is not None and len(p) + max(len(c), len(r)) > max_length:
            dropped += 1
            continue
        out_p.append(p)
        out_c.append(c)
        out_r.append(r)
        kept.append(row)
    return Truncated(out_p, out_c, out_r, kept, cut_prompts, cut_responses, dropped)
