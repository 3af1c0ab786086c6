"""Summed token log-probabilities of responses given prompts, for a batch of variable-length pairs.

Shared by the learner (policy and reference log-probs) and the generators (to check weight sync),
so both compute log pi(y|x) the same way. Pure torch; no Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.utils.checkpoint

from actors.kernels.hf_model import unwrap


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
    return _target_logprobs(logits[:, :-1, :].float(), input_ids[:, 1:])


def _target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., target] for each position; logits (..., vocab), targets (...)."""
    # logsumexp + gather instead of a full log_softmax keeps one (..., vocab) buffer fewer.
    return torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


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


# --- chosen and rejected in one sequence, sharing the prompt ---------------------------------------------


@dataclass(frozen=True)
class SharedPromptBatch:
    """Pairs packed as prompt + chosen + rejected per row, with what each scored token needs.

    The rejected response restarts its positions where the chosen one started and may not attend to
    the chosen tokens, so each response sees exactly prompt + itself, as if packed alone; the prompt
    is encoded once instead of twice. Only real response tokens are scored.
    """

    input_ids: torch.Tensor  # (n, width) long, padded with pad_id
    position_ids: torch.Tensor  # (n, width) long
    segment: torch.Tensor  # (n, width) int8: 0 pad, 1 prompt, 2 chosen, 3 rejected
    rows: torch.Tensor  # (tokens,) the pair each scored token belongs to
    sources: torch.Tensor  # (tokens,) the position whose hidden state predicts it
    targets: torch.Tensor  # (tokens,) its token id
    rejected: torch.Tensor  # (tokens,) bool: a rejected-response token


def pack_shared_prompt(prompt_ids: Sequence[Sequence[int]], chosen_ids: Sequence[Sequence[int]],
                       rejected_ids: Sequence[Sequence[int]], pad_id: int) -> SharedPromptBatch:
    n = len(prompt_ids)
    width = max((len(p) + len(c) + len(r) for p, c, r in zip(prompt_ids, chosen_ids, rejected_ids, strict=True)),
                default=0)  # fmt: skip
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((n, width), dtype=torch.long)
    segment = torch.zeros((n, width), dtype=torch.int8)
    rows, sources, targets, rejected = [], [], [], []
    for row, (p, c, r) in enumerate(zip(prompt_ids, chosen_ids, rejected_ids)):
        n_p, n_c, n_r = len(p), len(c), len(r)
        if n_p == 0:
            raise ValueError(f"pair {row} has an empty prompt: a response's first token needs a context")
        input_ids[row, : n_p + n_c + n_r] = torch.as_tensor([*p, *c, *r], dtype=torch.long)
        position_ids[row, : n_p + n_c] = torch.arange(n_p + n_c)
        position_ids[row, n_p + n_c : n_p + n_c + n_r] = torch.arange(n_p, n_p + n_r)
        segment[row, :n_p], segment[row, n_p : n_p + n_c], segment[row, n_p + n_c : n_p + n_c + n_r] = 1, 2, 3
        # Token j of a response is predicted by the hidden state before it: the prompt's last one for j = 0.
        sources += [n_p - 1 + j for j in range(n_c)]
        sources += [n_p - 1 if j == 0 else n_p + n_c + j - 1 for j in range(n_r)]
        targets += [*c, *r]
        rows += [row] * (n_c + n_r)
        rejected += [False] * n_c + [True] * n_r
    return SharedPromptBatch(input_ids, position_ids, segment, torch.as_tensor(rows, dtype=torch.long),
                             torch.as_tensor(sources, dtype=torch.long), torch.as_tensor(targets, dtype=torch.long),
                             torch.as_tensor(rejected, dtype=torch.bool))  # fmt: skip


def shared_prompt_attention(segment: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive (n, 1, width, width) mask: causal, no padding keys, rejected queries never see chosen keys."""
    width = segment.shape[1]
    causal = torch.ones((width, width), dtype=torch.bool, device=segment.device).tril()
    allowed = causal & (segment != 0)[:, None, :]
    allowed &= ~((segment == 3)[:, :, None] & (segment == 2)[:, None, :])
    allowed |= torch.eye(width, dtype=torch.bool, device=segment.device)  # padding rows attend to themselves
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def _token_logprobs_of(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _target_logprobs(head(hidden).float(), targets)


def scored_token_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                          chunk_tokens: int | None = None) -> torch.Tensor:
    """log p(targets[i] | hidden[i]) under the output projection `head`, float32, one value per row.

    The (tokens, vocabulary) float32 logits, and the softmax's gradient of the same size, are the largest
    tensors of a DPO step on a long response with a large vocabulary (8,192 tokens x 128,256 entries is 4.2 GB
    each). With `chunk_tokens`, they exist that many tokens at a time: each chunk's logits are recomputed in
    the backward pass (activation checkpointing of the projection alone) instead of kept, for one more
    projection matmul per scored token. None, or no more tokens than that: one pass, logits kept.
    """
    if chunk_tokens is None or hidden.shape[0] <= chunk_tokens:
        return _token_logprobs_of(head, hidden, targets)
    parts = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        chunk = (head, hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens])
        parts.append(torch.utils.checkpoint.checkpoint(_token_logprobs_of, *chunk, use_reentrant=False)
                     if torch.is_grad_enabled() else _token_logprobs_of(*chunk))
    return torch.cat(parts)


def supports_shared_prompt(model: torch.nn.Module) -> bool:
    """Whether logits are lm_head(decoder output), with nothing in between we would skip."""
    config = getattr(model, "config", None)
    return (
        config is not None
        and hasattr(model, "get_decoder") and hasattr(model, "get_output_embeddings")
        and getattr(config, "final_logit_softcapping", None) is None
        and getattr(config, "logit_scale", None) is None
        and not getattr(config, "is_encoder_decoder", False)
    )  # fmt: skip


def pair_logprobs(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], chosen_ids: Sequence[Sequence[int]],
                  rejected_ids: Sequence[Sequence[int]], pad_id: int,
                  compute_dtype: torch.dtype | None = None,
                  logit_chunk_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(y_w|x) and log pi(y_l|x) per pair (float32, with grad if enabled), the prompt encoded once.

    `model` may be wrapped (DDP): the forward pass goes through the wrapper, so gradients synchronise.
    `compute_dtype`: the dtype the attention runs in under mixed precision (autocast or FSDP's policy), which
    the attention mask must match (default: the parameters' dtype).
    `logit_chunk_tokens`: the scored tokens' logits exist this many tokens at a time (`scored_token_logprobs`).
    Equal to `sequence_logprobs` on each side; models whose logits are not lm_head(decoder output) take
    that path instead (unchunked).
    """
    inner = unwrap(model)
    if not supports_shared_prompt(inner):
        n = len(prompt_ids)
        logps = sequence_logprobs(model, [*prompt_ids, *prompt_ids], [*chosen_ids, *rejected_ids], pad_id)
        return logps[:n], logps[n:]
    batch = pack_shared_prompt(prompt_ids, chosen_ids, rejected_ids, pad_id)
    parameter = next(inner.parameters())
    device = parameter.device
    captured: dict[str, torch.Tensor] = {}

    def keep_hidden(_module, _inputs, output):
        captured["hidden"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    hook = inner.get_decoder().register_forward_hook(keep_hidden)
    try:
        # logits_to_keep=1: the model's own head runs on one position; ours runs on the scored ones only.
        model(input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device),
              attention_mask=shared_prompt_attention(batch.segment.to(device), compute_dtype or parameter.dtype),
              logits_to_keep=1)
    finally:
        hook.remove()
    rows, targets = batch.rows.to(device), batch.targets.to(device)
    scored = scored_token_logprobs(inner.get_output_embeddings(), captured["hidden"][rows, batch.sources.to(device)],
                                   targets, logit_chunk_tokens)
    rejected = batch.rejected.to(device)
    n = len(prompt_ids)
    chosen_sum = torch.zeros(n, device=device).index_add(0, rows[~rejected], scored[~rejected])
    rejected_sum = torch.zeros(n, device=device).index_add(0, rows[rejected], scored[rejected])
    return chosen_sum, rejected_sum
