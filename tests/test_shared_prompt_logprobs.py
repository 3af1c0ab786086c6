"""Chosen and rejected scored in one sequence that shares the prompt: equal to scoring each alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from actors.kernels.logprobs import pack_shared_prompt, pair_logprobs, sequence_logprobs, shared_prompt_attention
from tiny_model import PAD_ID, build_tiny_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("shared") / "model")


def random_pairs(seed: int, count: int = 6):
    rng = np.random.default_rng(seed)
    draw = lambda lo, hi: rng.integers(6, 90, rng.integers(lo, hi)).tolist()  # noqa: E731
    prompts = [draw(1, 9) for _ in range(count)]
    chosen = [draw(1, 8) for _ in range(count)]
    rejected = [draw(1, 10) for _ in range(count)]
    chosen[1], rejected[2] = [], []  # empty responses score 0 and must not disturb their neighbours
    return prompts, chosen, rejected


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_values_and_gradients_equal_separate_sequences(model_path, attention):
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation=attention)
    prompts, chosen, rejected = random_pairs(0)
    shared_c, shared_r = pair_logprobs(model, prompts, chosen, rejected, PAD_ID)
    alone = sequence_logprobs(model, prompts + prompts, chosen + rejected, PAD_ID)
    torch.testing.assert_close(shared_c, alone[:6], rtol=0, atol=2e-5)
    torch.testing.assert_close(shared_r, alone[6:], rtol=0, atol=2e-5)
    assert shared_c[1] == 0 and shared_r[2] == 0
    # A DPO-like objective: the gradients match too (the rejected side really cannot see the chosen one).
    (shared_c.sum() - 2 * shared_r.sum()).backward()
    shared_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (alone[:6].sum() - 2 * alone[6:].sum()).backward()
    for got, want in zip(shared_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_rejected_tokens_cannot_attend_to_chosen_tokens():
    batch = pack_shared_prompt([[5, 6]], [[7, 8]], [[9, 10, 11]], PAD_ID)
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 2, 3, 4]
    mask = shared_prompt_attention(batch.segment, torch.float32)[0, 0] == 0
    assert mask[4].tolist() == [True, True, False, False, True, False, False]  # first rejected token
    assert mask[3].tolist() == [True, True, True, True, False, False, False]  # last chosen token: causal
    # Token sources: chosen 7 <- pos 1, 8 <- pos 2; rejected 9 <- pos 1 (the prompt's end), 10 <- 4, 11 <- 5.
    assert batch.sources.tolist() == [1, 2, 1, 4, 5] and batch.targets.tolist() == [7, 8, 9, 10, 11]


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="empty prompt"):
        pack_shared_prompt([[]], [[7]], [[8]], PAD_ID)


def test_logits_in_chunks_give_the_same_values_and_gradients_and_never_exceed_the_chunk(model_path):
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    prompts, chosen, rejected = random_pairs(1, count=8)
    rows_seen = []

    def record(_module, inputs, _output):  # ours: (tokens, hidden); the model's own call on its last position is 3-D
        if inputs[0].dim() == 2:
            rows_seen.append(len(inputs[0]))

    hook = model.get_output_embeddings().register_forward_hook(record)
    results = {}
    for chunk in (None, 5):
        rows_seen.clear()
        model.zero_grad()
        c, r = pair_logprobs(model, prompts, chosen, rejected, PAD_ID, logit_chunk_tokens=chunk)
        (c.sum() - 2 * r.sum()).backward()
        results[chunk] = (c.detach(), r.detach(), [p.grad.clone() for p in model.parameters()], list(rows_seen))
    scored = sum(map(len, chosen)) + sum(map(len, rejected))
    whole, chunked = results[None], results[5]
    assert whole[3] == [scored]
    # Chunks of 5 in the forward pass, and the same chunks again when the backward pass recomputes them.
    chunks = [min(5, scored - i) for i in range(0, scored, 5)]
    assert chunked[3][: len(chunks)] == chunks and sorted(chunked[3][len(chunks) :]) == sorted(chunks)
    torch.testing.assert_close(chunked[0], whole[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(chunked[1], whole[1], rtol=0, atol=1e-5)
    for got, want in zip(chunked[2], whole[2], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # no graph: plain chunks, nothing to recompute
        rows_seen.clear()
        pair_logprobs(model, prompts, chosen, rejected, PAD_ID, logit_chunk_tokens=5)
    hook.remove()
    assert rows_seen == chunks
