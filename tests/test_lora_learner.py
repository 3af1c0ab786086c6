"""learner.lora on real Ray Train workers: two 2-worker learners on the tiny model, `ddp` and `fsdp`, each trained
for two rounds with the reference 'initial' (the base with the adapters off).

What must hold: only adapter tensors are published (bytes counted in `sync_bytes` and equal to what a generator
receives); the two strategies train the same adapters; each round's checkpoint is a peft adapter that peft loads
into the learner's own end-of-round log-probs, and the last round's `merged/` folder is a plain model that
from_pretrained loads into the same; a generator that merges the published adapter computes them too.
"""

from __future__ import annotations

import os

import pytest
import torch

from actors.generator import Generator
from actors.kernels.dpo_trainer import PairTokens
from actors.kernels.hf_model import load_model
from actors.kernels.logprobs import pair_logprobs
from actors.weight_sync.packing import sent_bytes
from actors.settings import GeneratorSettings, LearnerSection, ModelSection
from actors.weight_sync import make_transport
from tiny_model import PAD_ID, build_tiny_model, random_pairs_table

LORA = dict(rank=4, alpha=8.0, target_modules="llama")
LEARNER = dict(num_workers=2, num_cpus_per_worker=1.0, epochs=2, batch_size=4, micro_batch_size=2,
               learning_rate=5e-3, beta=0.5, reference="initial", lora=LORA)  # fmt: skip
ROUNDS = {0: 6, 1: 5}  # round index -> pairs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("model") / "initial"))


def _pairs(index: int) -> PairTokens:
    return PairTokens.from_table(random_pairs_table(ROUNDS[index], seed=40 + index))


def _run(tiny_model: str, root, strategy: str) -> dict:
    from cluster.learner_client import DPOLearner

    learner = DPOLearner(LearnerSection(**LEARNER, strategy=strategy), ModelSection(), tiny_model,
                         str(root / "ray_train"), f"lora-{strategy}", seed=5, last_round=max(ROUNDS))  # fmt: skip
    rounds = {}
    try:
        for index, n in ROUNDS.items():
            checkpoint = str(root / f"round_{index}" / "checkpoint")
            metrics, handle = learner.train_round(index, random_pairs_table(n, seed=40 + index), checkpoint)
            received = make_transport(handle.transport).receive(handle)
            rounds[index] = dict(metrics=metrics, handle=handle, checkpoint=checkpoint,
                                 received={k: v.clone() for k, v in received.items()})  # fmt: skip
        # What the HF generator does with the last handle, while the learner (the object's owner) lives.
        generator = Generator(GeneratorSettings(model_path=tiny_model, lora=LearnerSection(lora=LORA).lora))
        generator.load_weights(rounds[1]["handle"])
        pairs = _pairs(1)
        rounds[1]["generator_chosen"] = generator.sequence_logprobs(pairs.prompts, pairs.chosen)
    finally:
        learner.shutdown()
    return rounds


@pytest.fixture(scope="module")
def ddp_and_fsdp(ray_cluster, tiny_model, tmp_path_factory):
    return {strategy: _run(tiny_model, tmp_path_factory.mktemp(strategy), strategy) for strategy in ("ddp", "fsdp")}


def _logps(model, pairs: PairTokens) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return pair_logprobs(model, pairs.prompts, pairs.chosen, pairs.rejected, PAD_ID)


def test_only_the_adapters_cross_the_transport(ddp_and_fsdp, tiny_model):
    full_bytes = sent_bytes(load_model(tiny_model, "float32", False).state_dict())
    for rounds in ddp_and_fsdp.values():
        for r in rounds.values():
            received = r["received"]
            assert received and all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in received)
            assert r["metrics"]["sync_bytes"] == sent_bytes(received) < full_bytes / 2


def test_fsdp_and_ddp_train_the_same_adapters(ddp_and_fsdp):
    ddp, fsdp = ddp_and_fsdp["ddp"], ddp_and_fsdp["fsdp"]
    for index in ROUNDS:
        assert fsdp[index]["metrics"]["loss"] == pytest.approx(ddp[index]["metrics"]["loss"], abs=1e-6)
        for key, tensor in ddp[index]["received"].items():
            assert torch.allclose(fsdp[index]["received"][key], tensor, atol=1e-5, rtol=0), key
    moved = max((ddp[1]["received"][k] - ddp[0]["received"][k]).abs().max().item() for k in ddp[0]["received"])
    assert moved > 1e-4  # round 1 trained further


def test_checkpoints_load_with_peft_and_merged_with_from_pretrained_into_the_learners_log_probs(ddp_and_fsdp, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    for rounds in ddp_and_fsdp.values():
        for index, r in rounds.items():
            files = set(os.listdir(r["checkpoint"]))
            assert {"adapter_config.json", "adapter_model.safetensors", "learner_state.json"} <= files
            assert ("merged" in files) == (index == max(ROUNDS))  # learner.lora.merged: 'last_round'
            with_peft = PeftModel.from_pretrained(load_model(tiny_model, "float32", False), r["checkpoint"])
            chosen, rejected = _logps(with_peft, _pairs(index))
            # The learner's own end-of-round log-probs (means over the round's pairs).
            assert chosen.mean().item() == pytest.approx(r["metrics"]["chosen_logps_end"], abs=1e-4)
            assert rejected.mean().item() == pytest.approx(r["metrics"]["rejected_logps_end"], abs=1e-4)
        last = rounds[max(ROUNDS)]
        merged = AutoModelForCausalLM.from_pretrained(os.path.join(last["checkpoint"], "merged"), use_safetensors=True)
        chosen, _ = _logps(merged, _pairs(max(ROUNDS)))
        assert chosen.mean().item() == pytest.approx(last["metrics"]["chosen_logps_end"], abs=1e-4)
        # The generator merged the published adapter into the same policy.
        assert last["generator_chosen"] == pytest.approx(chosen.tolist(), abs=1e-4)


def test_the_reference_stays_the_base(ddp_and_fsdp, tiny_model):
    base = load_model(tiny_model, "float32", False)
    for rounds in ddp_and_fsdp.values():
        for index, r in rounds.items():
            chosen, _ = _logps(base, _pairs(index))
            assert r["metrics"]["ref_chosen_logps"] == pytest.approx(chosen.mean().item(), abs=1e-5)
