"""The learner's length limits (actors/kernels/truncation.py): learner.max_prompt_tokens, max_response_tokens
and max_length.

The rule itself first, then the real `RoundTrainer` on the tiny model (tests/tiny_model.py), in one process:
a 10,000-token prompt is trained on as its last max_prompt_tokens tokens and the round's log-probs are
those of the truncated sequences; pairs that still do not fit are dropped and counted, and a round that
drops every pair still completes. Last, one round through the real Ray Train learner.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from actors.kernels.dpo_trainer import PairTokens, RoundTrainer
from actors.kernels.logprobs import sequence_logprobs
from actors.kernels.training_controls import LEARNER_STATE_FILE
from actors.kernels.truncation import TRUNCATION_KEYS, truncate_pairs
from actors.settings import LearnerSection, ModelSection
from tiny_model import PAD_ID, VOCAB, build_tiny_model

WORDS = len(dict.fromkeys(VOCAB))  # token ids of the tiny model's vocabulary: 0 .. WORDS - 1


def tokens(count: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(6, WORDS, count).tolist()


def test_prompts_keep_their_end_responses_their_start_and_too_long_pairs_are_dropped():
    long_prompt = list(range(10_000))
    cut = truncate_pairs(
        prompts=[long_prompt, [1, 2, 3], [4] * 5, [5] * 9],
        chosen=[[7, 8], list(range(100, 130)), [6] * 3, [6] * 2],
        rejected=[[9], [11, 12], list(range(200, 220)), [6] * 2],
        max_prompt_tokens=8, max_response_tokens=10, max_length=14,
    )  # fmt: skip
    assert cut.prompts[0] == list(range(9_992, 10_000))  # the last 8 tokens, in order
    assert cut.chosen[1] == list(range(100, 110)) and cut.rejected[1] == [11, 12]  # the first 10 tokens
    # Pair 3: its prompt is cut to 8, and 8 + 2 fits; pair 2: 5 + 10 = 15 > 14 after the cut, so it is dropped.
    assert cut.kept == [0, 1, 3] and cut.prompts[2] == [5] * 8
    assert cut.counts() == {"prompts_truncated": 2, "responses_truncated": 2, "pairs_dropped": 1}
    assert tuple(cut.counts()) == TRUNCATION_KEYS


def test_no_limit_changes_nothing():
    prompts, chosen, rejected = [list(range(5_000))], [[1] * 3_000], [[2]]
    cut = truncate_pairs(prompts, chosen, rejected)
    assert (cut.prompts, cut.chosen, cut.rejected, cut.kept) == (prompts, chosen, rejected, [0])
    assert cut.counts() == dict.fromkeys(TRUNCATION_KEYS, 0)


# ---- through the real trainer on the tiny model ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("model") / "tiny"))


def load(model_path: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)


def trainer(model_path: str, **limits) -> RoundTrainer:
    settings = LearnerSection(num_workers=1, batch_size=4, **limits)
    model = load(model_path)
    return RoundTrainer(model, torch.optim.AdamW(model.parameters(), lr=1e-3), settings, PAD_ID)


def test_a_10000_token_prompt_is_trained_on_as_its_last_tokens(tiny_model):
    # The tiny model has 256 positions: without the limit the first pair could not even be scored.
    pairs = PairTokens(prompts=[tokens(10_000, 1), tokens(5, 2), tokens(7, 3)],
                       chosen=[tokens(3, 4), tokens(40, 5), tokens(4, 6)],
                       rejected=[tokens(2, 7), tokens(3, 8), tokens(30, 9)])  # fmt: skip
    expected = PairTokens(prompts=[pairs.prompts[0][-12:], pairs.prompts[1], pairs.prompts[2]],
                          chosen=[pairs.chosen[0], pairs.chosen[1][:6], pairs.chosen[2]],
                          rejected=[pairs.rejected[0], pairs.rejected[1], pairs.rejected[2][:6]])  # fmt: skip
    metrics = trainer(tiny_model, max_prompt_tokens=12, max_response_tokens=6).train_round(0, pairs)
    assert {key: metrics[key] for key in TRUNCATION_KEYS} == \
        {"prompts_truncated": 1, "responses_truncated": 2, "pairs_dropped": 0}
    assert metrics["pairs_trained"] == 3 and metrics["steps"] == 1
    assert metrics["tokens"] == expected.num_tokens()  # the step saw the truncated sequences
    # Reference 'round': the reference log-probs are the untrained policy's, on the truncated sequences.
    with torch.no_grad():
        policy = load(tiny_model).eval()
        chosen = sequence_logprobs(policy, expected.prompts, expected.chosen, PAD_ID).double().mean().item()
        rejected = sequence_logprobs(policy, expected.prompts, expected.rejected, PAD_ID).double().mean().item()
    assert metrics["ref_chosen_logps"] == pytest.approx(chosen, abs=1e-4)
    assert metrics["ref_rejected_logps"] == pytest.approx(rejected, abs=1e-4)


def test_pairs_that_still_do_not_fit_are_dropped_and_counted(tiny_model):
    pairs = PairTokens(prompts=[tokens(6, 10), tokens(30, 11), tokens(4, 12), tokens(9, 13)],
                       chosen=[tokens(3, 14), tokens(2, 15), tokens(20, 16), tokens(2, 17)],
                       rejected=[tokens(2, 18), tokens(2, 19), tokens(2, 20), tokens(3, 21)])  # fmt: skip
    # After the cuts (prompt 8, response 8): pairs 0 and 1 fit (9, 8 + 2 = 10); 2 (4 + 8) and 3 (8 + 3) do not.
    metrics = trainer(tiny_model, max_prompt_tokens=8, max_response_tokens=8, max_length=10).train_round(0, pairs)
    assert {key: metrics[key] for key in TRUNCATION_KEYS} == \
        {"prompts_truncated": 2, "responses_truncated": 1, "pairs_dropped": 2}
    assert metrics["pairs_trained"] == 2 and metrics["pair_updates"] == 2
    kept = PairTokens([pairs.prompts[0], pairs.prompts[1][-8:]], [pairs.chosen[0], pairs.chosen[1]],
                      [pairs.rejected[0], pairs.rejected[1]])  # fmt: skip
    with torch.no_grad():
        chosen = sequence_logprobs(load(tiny_model).eval(), kept.prompts, kept.chosen, PAD_ID).double().mean().item()
    assert metrics["ref_chosen_logps"] == pytest.approx(chosen, abs=1e-4)  # dropped pairs are in no pass


def test_a_round_whose_every_pair_is_dropped_completes_with_nothing_trained(tiny_model, caplog):
    pairs = PairTokens([tokens(20, 30), tokens(25, 31)], [tokens(3, 32), tokens(3, 33)], [tokens(3, 34), tokens(3, 35)])
    run = trainer(tiny_model, max_length=10)
    before = [p.detach().clone() for p in run.model.parameters()]
    with caplog.at_level(logging.WARNING, logger="actors.kernels.dpo_trainer"):
        metrics = run.train_round(4, pairs)
    assert metrics["pairs_dropped"] == 2 and metrics["pairs_trained"] == 0 and metrics["steps"] == 0
    assert metrics["loss"] is None and metrics["step_history"] == [] and metrics["lr_first"] is None
    assert all(torch.equal(p, q) for p, q in zip(before, run.model.parameters()))
    assert "learner round 4: every one of its 2 pairs dropped" in caplog.text and "0 pairs trained" in caplog.text


# ---- one round of the real Ray Train learner ---------------------------------------------------------


@pytest.mark.ray
def test_the_ray_train_learner_truncates_and_reports_the_counts(ray_cluster, tiny_model, tmp_path):
    from cluster.learner_client import DPOLearner

    settings = LearnerSection(num_workers=1, batch_size=2, max_prompt_tokens=16, max_response_tokens=4,
                              max_length=18, lr_schedule="linear", warmup_steps=1, schedule_steps=10)  # fmt: skip
    rows = [(tokens(10_000, 40), tokens(3, 41), tokens(9, 42)),  # prompt and rejected cut: 16 + 4 = 20 > 18
            (tokens(5_000, 43), tokens(2, 44), tokens(2, 45)),  # prompt cut: 16 + 2 fits
            (tokens(6, 46), tokens(12, 47), tokens(3, 48)),     # chosen cut: 6 + 4 fits
            (tokens(6, 49), tokens(3, 50), tokens(3, 51))]      # untouched  # fmt: skip
    ids = pa.list_(pa.int32())
    table = pa.table({"prompt_id": [f"p{i}" for i in range(len(rows))],
                      **{name: pa.array([row[i] for row in rows], ids) for i, name in
                         enumerate(("prompt_token_ids", "chosen_token_ids", "rejected_token_ids"))}})  # fmt: skip
    checkpoint = tmp_path / "round_0" / "checkpoint"
    with DPOLearner(settings, ModelSection(), tiny_model, str(tmp_path / "ray_train"), "truncation-test") as learner:
        metrics, _ = learner.train_round(0, table, str(checkpoint))
    assert {key: metrics[key] for key in TRUNCATION_KEYS} == \
        {"prompts_truncated": 2, "responses_truncated": 2, "pairs_dropped": 1}
    assert metrics["pairs_trained"] == 3 and metrics["steps"] == 2 and metrics["global_step"] == 2
    assert (metrics["lr_first"], metrics["lr_last"]) == (0.0, pytest.approx(settings.learning_rate))
    # The schedule's position travels with the checkpoint, for a resumed run.
    assert json.loads(Path(checkpoint, LEARNER_STATE_FILE).read_text()) == {"global_step": 2, "round_index": 0}
