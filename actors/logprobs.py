"""Summed token log-probabilities of responses given prompts, for a batch of variable-length pairs.

Shared by the learner (policy and reference log-probs) and the generators (to check weight sync),
so both compute log pi(y|x) the same way. Pure torch; no Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pack_prompt_response(
    prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad prompt+response sequences to the batch's longest (no wasted padding beyond it).

    Returns (input_ids, attention_mask, response_mask); response_mask is 1 on response tokens.
    """
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids, strict=True)]
    width = max(lengths) if lengths else 0
    batch = len(lengths)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    response_mask = torch.zeros((batch, width), dtype=torch.bool)
    for row, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        n_p, n = len(p), len(p) + len(r)
        input_ids[row, :n_p] = torch.as_tensor(list(p), dtype=torch.long)
        input_ids[row, n_p:n] = torch.as_tensor(list(r), dtype=torch.long)
        attention[row, :n] = 1
        response_mask[row, n_p:n] = True
    return input_ids, attention, response_mask


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t] | prefix) for t >= 1, shape (batch, width - 1), in float32."""
    shifted = logits[:, :-1, :].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    # logsumexp + gather instead of a full log_softmax keeps one (batch, width, vocab) buffer fewer.
    return torch.gather(shifted, -1, targets).squeeze(-1) - torch.logsumexp(shifted, dim=-1)


def sequence_logprobs(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
) -> torch.Tensor:
    """Sum over response tokens of log pi(y_t | x, y_<t); one float32 value per pair, with grad if enabled."""
    input_ids, attention, response_mask = pack_prompt_response(prompt_ids, response_ids, pad_id)
    device = next(model.parameters()).device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
    per_token = token_logprobs(logits, input_ids.to(device))
    mask = response_mask[:, 1:].to(device)
    return (per_token * mask).sum(dim=-1)
