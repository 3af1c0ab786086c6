"""Generator (HF backend) on a tiny real Llama: rollout schema, log-probs, seeding, stop handling, weight sync."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from tiny_model import EOS_ID, build_tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from actors.generator import Generator, GeneratorSettings, SamplingParams, batch_seed
from actors.kernels.logprobs import sequence_logprobs
from actors.weight_sync import DiskTransport, ObjectStoreTransport
from cluster.data.prompts import prompt_texts

PROMPTS = ["what is 2 plus 3?", "hello", "say one two three four five six", "add 4 and 9", "write a short answer"]
ROLLOUT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("prompt_text", pa.string()),
        ("answer", pa.int64()),
        ("sample_index", pa.int32()),
        ("response", pa.string()),
        ("prompt_token_ids", pa.list_(pa.int32())),
        ("response_token_ids", pa.list_(pa.int32())),
        ("sampling_logprob", pa.float64()),
        ("token_logprobs", pa.list_(pa.float32())),
        ("finish_reason", pa.string()),
        ("weights_version", pa.int32()),
    ]
)

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("generator") / "model"))


@pytest.fixture(scope="module")
def generator(model_dir):
    return Generator(GeneratorSettings(model_dir))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


def make_prompts(tokenizer, texts=PROMPTS) -> pa.Table:
    return pa.table(
        {
            "prompt_id": [f"q{i}" for i in range(len(texts))],
            "prompt": texts,
            "prompt_text": prompt_texts(texts, tokenizer, apply_chat_template=True),
            "answer": list(range(len(texts))),
        }
    )


def perturbed_model(model_dir: str, seed: int) -> torch.nn.Module:
    """The tiny model with every weight moved, standing in for a trained policy."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def test_rollouts_have_the_contract_schema_and_k_samples_of_every_prompt(generator, tokenizer):
    prompts = make_prompts(tokenizer)
    sampling = SamplingParams(samples_per_prompt=3, max_new_tokens=8, batch_size=2, seed=1)  # batches 2+2+1

    rollouts = generator.generate(prompts, sampling)

    assert rollouts.schema.equals(ROLLOUT_SCHEMA)
    assert rollouts.num_rows == len(PROMPTS) * 3
    rows = rollouts.to_pylist()
    for index, row in enumerate(rows):
        source = prompts.slice(index // 3, 1).to_pylist()[0]
        assert {k: row[k] for k in source} == source  # prompt columns repeated per sample, in order
        assert row["sample_index"] == index % 3
        assert row["prompt_token_ids"] == tokenizer(row["prompt_text"], add_special_tokens=False)["input_ids"]
        assert 1 <= len(row["response_token_ids"]) <= 8
        assert len(row["token_logprobs"]) == len(row["response_token_ids"])
        assert all(v <= 0 for v in row["token_logprobs"])
        assert row["sampling_logprob"] == pytest.approx(sum(row["token_logprobs"]), abs=1e-4)
        assert row["response"] == tokenizer.decode(row["response_token_ids"], skip_special_tokens=True)
        assert row["weights_version"] == 0


def test_an_empty_prompts_table_gives_an_empty_rollouts_table(generator, tokenizer):
    empty = make_prompts(tokenizer).slice(0, 0)
    rollouts = generator.generate(empty, SamplingParams(samples_per_prompt=2, max_new_tokens=4))
    assert rollouts.num_rows == 0
    assert rollouts.schema.equals(ROLLOUT_SCHEMA)


def test_sampling_logprob_is_the_models_log_probability_at_temperature_one(generator, tokenizer):
    rollouts = generator.generate(
        make_prompts(tokenizer), SamplingParams(samples_per_prompt=2, max_new_tokens=10, seed=3)
    )
    recomputed = generator.sequence_logprobs(
        rollouts.column("prompt_token_ids").to_pylist(), rollouts.column("response_token_ids").to_pylist()
    )
    # Generation ran left-padded and batched; the recomputation is right-padded: positions must agree.
    np.testing.assert_allclose(rollouts.column("sampling_logprob").to_numpy(), recomputed, atol=2e-4)


def reference_token_logprobs(model, prompt_ids, response_ids, temperature, top_p) -> np.ndarray:
    """log-probs of each response token under softmax(logits / T) restricted to the top-p nucleus."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].double() / temperature
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, mass_before < top_p)
    logprobs = torch.log_softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)
    return logprobs.gather(-1, torch.tensor(response_ids)[:, None]).squeeze(-1).numpy()


def test_token_logprobs_are_under_the_tempered_nucleus_distribution(generator, tokenizer, model_dir):
    temperature, top_p = 0.7, 0.8
    rollouts = generator.generate(
        make_prompts(tokenizer),
        SamplingParams(samples_per_prompt=2, temperature=temperature, top_p=top_p, max_new_tokens=6, seed=5),
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).eval()
    for row in rollouts.to_pylist():
        expected = reference_token_logprobs(
            model, row["prompt_token_ids"], row["response_token_ids"], temperature, top_p
        )
        assert np.all(np.isfinite(expected)), "a sampled token lies outside the top-p nucleus"
        np.testing.assert_allclose(row["token_logprobs"], expected, atol=2e-4)


def test_the_same_seed_reproduces_the_samples_and_another_seed_changes_them(generator, tokenizer):
    prompts = make_prompts(tokenizer)
    sampling = SamplingParams(samples_per_prompt=2, max_new_tokens=8, batch_size=2, seed=11)

    first = generator.generate(prompts, sampling)
    generator.generate(prompts, SamplingParams(samples_per_prompt=2, max_new_tokens=8, seed=99))  # moves torch's RNG
    again = generator.generate(prompts, sampling)
    other = generator.generate(prompts, SamplingParams(samples_per_prompt=2, max_new_tokens=8, batch_size=2, seed=12))

    assert again.equals(first)
    assert other.column("response_token_ids").to_pylist() != first.column("response_token_ids").to_pylist()


def test_batch_seed_depends_on_the_seed_and_the_prompt_ids_only():
    assert batch_seed(1, ["a", "b"]) == batch_seed(1, ["a", "b"])
    assert (
        len({batch_seed(1, ["a", "b"]), batch_seed(2, ["a", "b"]), batch_seed(1, ["b", "a"]), batch_seed(1, ["ab"])})
        == 4
    )
    assert 0 <= batch_seed(7, ["x"]) < 2**63


def test_stop_rows_end_at_their_first_eos_and_length_rows_are_full(generator, tokenizer):
    texts = [f"add {a} and {b}" for a in range(4) for b in range(4)]
    rollouts = generator.generate(
        make_prompts(tokenizer, texts), SamplingParams(samples_per_prompt=4, max_new_tokens=16, seed=2)
    )

    reasons = rollouts.column("finish_reason").to_pylist()
    assert {"stop", "length"} <= set(reasons)  # a uniform-ish 96-token model stops within 16 tokens ~15% of the time
    for reason, ids in zip(reasons, rollouts.column("response_token_ids").to_pylist(), strict=True):
        if reason == "stop":
            assert ids[-1] == EOS_ID and EOS_ID not in ids[:-1]
        else:
            assert reason == "length" and len(ids) == 16 and EOS_ID not in ids


def test_a_tokenizer_without_pad_token_pads_with_eos(tmp_path, tokenizer):
    no_pad = Generator(GeneratorSettings(str(build_tiny_model(tmp_path / "model", with_pad_token=False))))
    rollouts = no_pad.generate(make_prompts(tokenizer), SamplingParams(samples_per_prompt=2, max_new_tokens=10, seed=4))
    recomputed = no_pad.sequence_logprobs(
        rollouts.column("prompt_token_ids").to_pylist(), rollouts.column("response_token_ids").to_pylist()
    )
    np.testing.assert_allclose(rollouts.column("sampling_logprob").to_numpy(), recomputed, atol=2e-4)
    for reason, ids in zip(
        rollouts.column("finish_reason").to_pylist(), rollouts.column("response_token_ids").to_pylist(), strict=True
    ):
        assert (ids[-1] == EOS_ID) == (reason == "stop")


def assert_generator_holds(generator: Generator, model: torch.nn.Module, rollouts: pa.Table) -> None:
    """The generator's log-probs equal those of `model`, the model whose weights were published."""
    prompts, responses = (
        rollouts.column("prompt_token_ids").to_pylist(),
        rollouts.column("response_token_ids").to_pylist(),
    )
    with torch.no_grad():
        expected = sequence_logprobs(model, prompts, responses, pad_id=0).numpy()
    np.testing.assert_allclose(generator.sequence_logprobs(prompts, responses), expected, atol=1e-5)


def test_object_store_weights_replace_the_policy(ray_cluster, model_dir, tokenizer):
    generator = Generator(GeneratorSettings(model_dir))
    prompts, sampling = make_prompts(tokenizer), SamplingParams(samples_per_prompt=2, max_new_tokens=8, seed=6)
    before = generator.generate(prompts, sampling)
    trained = perturbed_model(model_dir, seed=1)
    handle = ObjectStoreTransport().publish(trained.state_dict(), version=1)

    assert generator.load_weights(handle) == 1
    assert generator.weights_version() == 1
    after = generator.generate(prompts, sampling)

    assert_generator_holds(generator, trained, before)
    assert after.column("weights_version").to_pylist() == [1] * after.num_rows
    assert after.column("response_token_ids").to_pylist() != before.column("response_token_ids").to_pylist()


def test_disk_weights_are_loaded_by_generate_when_the_version_differs(model_dir, tokenizer, tmp_path):
    trained = perturbed_model(model_dir, seed=2)
    trained.save_pretrained(tmp_path / "checkpoint")
    handle = DiskTransport().publish(trained.state_dict(), version=3, checkpoint_dir=str(tmp_path / "checkpoint"))
    prompts, sampling = make_prompts(tokenizer), SamplingParams(samples_per_prompt=2, max_new_tokens=8, seed=7)

    explicit = Generator(GeneratorSettings(model_dir))
    explicit.load_weights(handle)
    restarted = Generator(GeneratorSettings(model_dir))  # e.g. an actor Ray restarted: back at version 0
    rollouts = restarted.generate(prompts, sampling, weights=handle)

    assert restarted.weights_version() == 3
    assert rollouts.equals(explicit.generate(prompts, sampling))
    assert rollouts.column("weights_version").to_pylist() == [3] * rollouts.num_rows
    assert_generator_holds(restarted, trained, rollouts)


def test_a_ray_actor_generates_what_the_in_process_generator_does(ray_cluster, generator, model_dir, tokenizer):
    prompts, sampling = (
        make_prompts(tokenizer),
        SamplingParams(samples_per_prompt=3, max_new_tokens=8, batch_size=2, seed=8),
    )
    actor = ray_cluster.remote(num_cpus=1)(Generator).remote(GeneratorSettings(model_dir, torch_threads=1))
    try:
        remote = ray_cluster.get(actor.generate.remote(prompts, sampling), timeout=120)
    finally:
        ray_cluster.kill(actor)
    assert remote.equals(generator.generate(prompts, sampling))


def test_sampling_params_reject_impossible_values():
    with pytest.raises(ValueError):
        SamplingParams(samples_per_prompt=0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError):
        SamplingParams(temperature=0.0)
