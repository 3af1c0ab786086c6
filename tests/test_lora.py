"""learner.lora in one process: the options and their errors, the reference with the adapters off, the adapter's
state dict, and what a generator and a checkpoint make of it (merged weights), on the tiny test model.

The learner's Ray Train side (ddp and fsdp workers, checkpoints, the published handle) is in
tests/test_lora_learner.py; a resumed LoRA run in tests/test_lora_resume.py.
"""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from actors.contracts import InputError
from actors.generator import Generator
from actors.kernels import lora
from actors.kernels.dpo_trainer import PairTokens, RoundTrainer
from actors.kernels.hf_model import load_model
from actors.kernels.logprobs import pair_logprobs
from actors.lora_options import LoraSection
from actors.settings import GeneratorSettings, LearnerSection
from actors.weight_sync import WeightsHandle
from actors.weight_sync.packing import sent_bytes
from cli_helpers import QUICKSTART, SMALL_RUN, run_cli
from tiny_model import PAD_ID, build_tiny_model, random_pairs_table

SECTION = LoraSection(rank=4, alpha=8, target_modules="llama")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("model") / "initial"))


def _pairs(n: int, seed: int) -> PairTokens:
    return PairTokens.from_table(random_pairs_table(n, seed=seed))


def _logps(model, pairs: PairTokens) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return pair_logprobs(model, pairs.prompts, pairs.chosen, pairs.rejected, PAD_ID)


def _trained_lora(tiny_model: str, reference: str = "initial", rounds: int = 1):
    settings = LearnerSection(num_workers=1, batch_size=4, epochs=2, learning_rate=5e-3, beta=0.5,
                              reference=reference, lora=SECTION.model_dump())  # fmt: skip
    model = lora.add_adapters(load_model(tiny_model, "float32", False), settings.lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
    trainer = RoundTrainer(model, optimizer, settings, PAD_ID)
    metrics = [trainer.train_round(i, _pairs(6, seed=20 + i)) for i in range(rounds)]
    return model, metrics


# ---- options: bad values stop the run before any model loads, naming the key ------------------------------


@pytest.mark.parametrize("lora_options, key", [
    ({"rank": 0}, "lora.rank"),
    ({"alpha": 0}, "lora.alpha"),
    ({"target_modules": "mistral"}, "lora.target_modules"),
    ({"target_modules": []}, "lora.target_modules"),
    ({"serve": "stream"}, "lora.serve"),
    ({"rnak": 8}, "lora.rnak"),
])  # fmt: skip
def test_bad_lora_options_are_refused_naming_the_key(lora_options, key):
    with pytest.raises(ValidationError) as error:
        LearnerSection(lora=lora_options)
    assert key in str(error.value).replace("\n", ".").replace(" ", "")


def test_presets_expand_and_the_scale_is_alpha_over_rank():
    assert LoraSection().modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert LoraSection(target_modules=["q_proj", "v_proj"], rank=8, alpha=4).scale == 0.5
    assert LearnerSection().lora is None  # full fine-tuning unless asked


def test_a_target_module_the_model_lacks_is_named_before_the_model_loads(tiny_model, monkeypatch):
    import transformers

    # Only config.json is read: loading the weights would be a failure of the check.
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the check loaded the model"))  # fmt: skip
    lora.check_targets_in_folder(tiny_model, SECTION)
    with pytest.raises(InputError, match=r"learner\.lora\.target_modules: .* no Linear module named 'c_attn'.*q_proj"):
        lora.check_targets_in_folder(tiny_model, LoraSection(target_modules=["q_proj", "c_attn"]))


@pytest.mark.slow
def test_the_cli_stops_a_run_with_a_wrong_target_module_with_exit_code_2(tmp_path):
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(tmp_path / "run"), *SMALL_RUN,
                     "learner.lora.target_modules=[query_key_value]")  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "learner.lora.target_modules" in result.stderr and "query_key_value" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "round_0000").exists()


# ---- the reference is the base with the adapters off --------------------------------------------------------


def test_fresh_adapters_leave_the_model_exactly_as_the_base(tiny_model):
    base, wrapped = load_model(tiny_model, "float32", False), lora.add_adapters(load_model(tiny_model, "float32", False), SECTION)
    pairs = _pairs(5, seed=1)
    for mine, theirs in zip(_logps(wrapped, pairs), _logps(base, pairs), strict=True):
        assert torch.equal(mine, theirs)  # LoRA's B starts at zero
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_reference_initial_is_the_base_exactly_after_training(tiny_model):
    model, metrics = _trained_lora(tiny_model, reference="initial", rounds=2)
    base = load_model(tiny_model, "float32", False)
    pairs = _pairs(6, seed=21)  # round 1's pairs: its reference pass ran with round 0's adapters in place
    base_c, base_r = _logps(base, pairs)
    # The trainer's passes pad per micro-batch and sum in float64: equal to float32 rounding (the exact check is below).
    assert metrics[1]["ref_chosen_logps"] == pytest.approx(base_c.mean().item(), abs=1e-5)
    assert metrics[1]["ref_rejected_logps"] == pytest.approx(base_r.mean().item(), abs=1e-5)
    with lora.adapters_off(model):
        off_c, off_r = _logps(model, pairs)
    assert torch.equal(off_c, base_c) and torch.equal(off_r, base_r)
    trained_c, _ = _logps(model, pairs)
    assert (trained_c - base_c).abs().max() > 1e-3  # the adapters did move the policy


def test_only_adapter_tensors_are_shipped(tiny_model):
    model, _ = _trained_lora(tiny_model)
    adapter = lora.adapter_state_dict(model)
    assert adapter and all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in adapter)
    assert len(adapter) == 2 * 2 * len(SECTION.modules)  # A and B, 2 layers, 7 projections
    full = load_model(tiny_model, "float32", False).state_dict()
    assert sent_bytes(adapter) == sum(t.numel() * 4 for t in adapter.values())
    assert sent_bytes(adapter) < sent_bytes(full) / 2
    tied = torch.zeros(8, 4)
    assert sent_bytes({"model.embed_tokens.weight": tied, "lm_head.weight": tied}) == 8 * 4 * 4  # sent once


# ---- what a generator and a checkpoint make of the adapter ----------------------------------------------


def test_the_hf_generator_merges_an_adapter_into_the_learners_log_probs(tiny_model, tmp_path):
    model, _ = _trained_lora(tiny_model)
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder, state_dict=lora.adapter_state_dict(model))  # what the learner's rank 0 writes
    generator = Generator(GeneratorSettings(model_path=tiny_model, lora=SECTION))
    pairs = _pairs(5, seed=3)
    before = generator.sequence_logprobs([p for p in pairs.prompts], pairs.chosen)
    generator.load_weights(WeightsHandle(1, "disk", str(folder)))
    after = generator.sequence_logprobs([p for p in pairs.prompts], pairs.chosen)
    learner_c, _ = _logps(model, pairs)
    assert after == pytest.approx(learner_c.tolist(), abs=1e-4)
    assert before != pytest.approx(after, abs=1e-3)
    # A second version replaces the first (merged onto the base, not onto the previous merge).
    resumed = Generator(GeneratorSettings(model_path=tiny_model, lora=SECTION, adapter_path=str(folder), initial_version=1))
    assert resumed.weights_version() == 1
    assert resumed.sequence_logprobs([p for p in pairs.prompts], pairs.chosen) == pytest.approx(after, abs=1e-6)
    generator.load_weights(WeightsHandle(2, "disk", str(folder)))
    assert generator.sequence_logprobs([p for p in pairs.prompts], pairs.chosen) == pytest.approx(after, abs=1e-6)
    # Its model features' gradients are the adapters' (the probe holds the adapter it merged).
    from actors.kernels.model_probe import FeatureOptions

    targets = generator._probe(FeatureOptions(gradient_modules="last_block")).targets
    adapter = lora.adapter_state_dict(model)
    assert [tuple(a.shape) for a in targets.lora_a] == [(4, m.in_features) for m in targets.modules]
    assert torch.equal(targets.lora_a[0], adapter["base_model.model." + targets.names[0] + ".lora_A.weight"])


def test_peft_and_merged_checkpoints_load_with_their_libraries(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, _ = _trained_lora(tiny_model)
    adapter = lora.adapter_state_dict(model)
    model.save_pretrained(tmp_path / "adapter", state_dict=adapter)
    lora.save_merged(adapter, tiny_model, SECTION.scale, str(tmp_path / "merged"))
    assert lora.adapter_base_path(str(tmp_path / "adapter")) == tiny_model
    pairs = _pairs(5, seed=4)
    expected = _logps(model, pairs)
    with_peft = PeftModel.from_pretrained(load_model(tiny_model, "float32", False), str(tmp_path / "adapter"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", use_safetensors=True)
    for loaded, tolerance in ((with_peft, 0.0), (merged, 1e-4)):
        for mine, theirs in zip(_logps(loaded, pairs), expected, strict=True):
            assert torch.allclose(mine, theirs, atol=tolerance, rtol=0)


# ---- gradient features are the adapters' ----------------------------------------------------------------------


def test_per_response_gradients_over_adapters_equal_autograds_on_the_peft_model(tiny_model):
    from actors.kernels.logprobs import sequence_logprobs
    from actors.kernels.per_sample_gradients import adapter_targets, per_response_gradients

    model, _ = _trained_lora(tiny_model)  # trained: A and B both non-zero
    adapter = lora.adapter_state_dict(model)
    merged = load_model(tiny_model, "float32", False)
    merged.load_state_dict(lora.merged_weights(adapter, tiny_model, SECTION.scale), strict=False)
    targets = adapter_targets(merged, "last_block", adapter, SECTION.scale)
    assert all(a is not None for a in targets.lora_a) and len(targets.modules) == len(SECTION.modules)
    pairs = _pairs(3, seed=7)
    features = per_response_gradients(merged, targets, pairs.prompts, pairs.chosen, PAD_ID)
    assert features.shape == (3, targets.num_parameters)
    # What autograd gives for the adapted model's own B and A parameters, in the same layout.
    last = max(int(n.split(".layers.")[1].split(".")[0]) for n, _ in model.named_parameters() if ".layers." in n)
    params = {n: p for n, p in model.named_parameters() if f".layers.{last}." in n and "lora_" in n}
    model.eval()
    for row in range(3):
        model.zero_grad()
        sequence_logprobs(model, [pairs.prompts[row]], [pairs.chosen[row]], PAD_ID).sum().backward()
        expected = []
        for name in targets.names:
            stem = "base_model.model." + name
            expected += [params[stem + ".lora_B.default.weight"].grad.flatten(),
                         params[stem + ".lora_A.default.weight"].grad.flatten()]  # fmt: skip
        assert torch.allclose(features[row], torch.cat(expected), atol=1e-5, rtol=1e-4)
    # A selected layer without an adapter keeps its own weight's gradient (lm_head, LoRA leaves it frozen).
    head = adapter_targets(merged, "lm_head", adapter, SECTION.scale)
    assert head.lora_a == [None] and head.shapes == [(merged.lm_head.out_features, merged.lm_head.in_features)]
