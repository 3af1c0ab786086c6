"""Greedy decoding (`SamplingParams.greedy`, the benchmark evaluation's): the argmax token at each step.

HF backend on the tests' tiny Llama (fast tier): the seed changes nothing, the responses are a plain
argmax loop's (and `model.generate(do_sample=False)`'s), token_logprobs are the chosen tokens' log-probs
at temperature 1, and greedy is never a `generation` option. vLLM backend (ray, slow tiers, on the
engine and tiny model of tests/test_vllm_generator.py): token for token the HF backend's greedy output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from actors.generator import Generator, GeneratorSettings, SamplingParams
from actors.settings import SAMPLING
from cluster.config import GenerationSection
from cluster.data.prompts import prompt_texts
from cluster.settings import sampling_params

# The vLLM engine (one per module, ~15-30 s to start) and its tiny model, hidden 128 (head size 64, the
# smallest vLLM's CPU kernels take), reused from tests/test_vllm_generator.py: `model_dir` is that model.
from test_vllm_generator import TEXTS, engine, model_dir, vllm_python  # noqa: F401  (pytest fixtures)

PROMPTS = ["what is 2 plus 3?", "hello", "say one two three four five six", "add 4 and 9", "write a short answer"]
MAX_NEW_TOKENS = 12

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tests' tiny Llama (tests/tiny_model.py). Not `model_dir`: that is the vLLM engine's below."""
    return str(build_tiny_model(tmp_path_factory.mktemp("greedy") / "model"))


@pytest.fixture(scope="module")
def generator(tiny_dir):
    return Generator(GeneratorSettings(tiny_dir))


def prompt_table(tokenizer, texts=PROMPTS):
    import pyarrow as pa

    return pa.table({
        "prompt_id": [f"q{i}" for i in range(len(texts))],
        "prompt": texts,
        "prompt_text": prompt_texts(texts, tokenizer, apply_chat_template=True),
        "answer": list(range(len(texts))),
    })


def greedy(seed: int, **overrides) -> SamplingParams:
    # temperature and top_p set far from 1 on purpose: greedy ignores them.
    values = dict(samples_per_prompt=1, temperature=0.3, top_p=0.5, max_new_tokens=MAX_NEW_TOKENS, batch_size=2,
                  seed=seed, greedy=True)
    return SamplingParams(**{**values, **overrides})


@torch.no_grad()
def argmax_loop(model, prompt: list[int], stop_id: int, max_new_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy decoding by hand, one unpadded prompt: the tokens and their log-probs at temperature 1."""
    ids, tokens, logprobs = list(prompt), [], []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids])).logits[0, -1].float()
        token = int(logits.argmax())
        tokens.append(token)
        logprobs.append(float(torch.log_softmax(logits, -1)[token]))
        ids.append(token)
        if token == stop_id:
            break
    return tokens, logprobs


def test_greedy_is_the_argmax_whatever_the_seed_and_records_temperature_1_logprobs(generator, tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    prompts = prompt_table(tokenizer)
    first = generator.generate(prompts, greedy(seed=1))
    second = generator.generate(prompts, greedy(seed=2, batch_size=5))  # another seed and batching

    assert first.num_rows == len(PROMPTS)
    assert first.column("sample_index").to_pylist() == [0] * len(PROMPTS)
    for column in ("response_token_ids", "response", "finish_reason"):
        assert first.column(column).to_pylist() == second.column(column).to_pylist(), column

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    for row in first.to_pylist():
        tokens, logprobs = argmax_loop(model, row["prompt_token_ids"], tokenizer.eos_token_id, MAX_NEW_TOKENS)
        assert row["response_token_ids"] == tokens
        np.testing.assert_allclose(row["token_logprobs"], logprobs, atol=1e-4)
        assert row["sampling_logprob"] == pytest.approx(sum(row["token_logprobs"]), abs=1e-4)
        assert row["finish_reason"] == ("stop" if tokens[-1] == tokenizer.eos_token_id else "length")
        # transformers' own greedy decoding agrees.
        reference = model.generate(torch.tensor([row["prompt_token_ids"]]), do_sample=False,
                                   max_new_tokens=MAX_NEW_TOKENS, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id)
        assert reference[0, len(row["prompt_token_ids"]):].tolist() == tokens


def test_greedy_is_the_drivers_choice_not_a_generation_option():
    assert "greedy" not in SAMPLING and "greedy" not in GenerationSection.model_fields
    with pytest.raises(ValidationError):
        GenerationSection(greedy=True)
    section = GenerationSection(samples_per_prompt=4, temperature=0.7)
    assert sampling_params(section, seed=3).greedy is False  # rollouts sample
    evaluation = sampling_params(section, seed=3, greedy=True)
    assert (evaluation.greedy, evaluation.samples_per_prompt, evaluation.seed) == (True, 1, 3)
    with pytest.raises(ValidationError, match="samples_per_prompt must be 1"):
        sampling_params(section, seed=3, samples_per_prompt=4, greedy=True)  # four copies of one response


@pytest.fixture(scope="module")
def vllm_prompts(model_dir):
    return prompt_table(AutoTokenizer.from_pretrained(model_dir), TEXTS[:4])


@pytest.mark.ray
@pytest.mark.slow
def test_vllm_greedy_is_the_hf_backends_token_for_token(engine, model_dir, vllm_prompts):
    import ray

    sampling = greedy(seed=0, max_new_tokens=24)
    rollouts = ray.get(engine.generate.remote(vllm_prompts, sampling))
    reference = Generator(GeneratorSettings(model_dir)).generate(vllm_prompts, sampling)  # float32

    assert rollouts.column("prompt_token_ids").to_pylist() == reference.column("prompt_token_ids").to_pylist()
    assert rollouts.column("response_token_ids").to_pylist() == reference.column("response_token_ids").to_pylist()
    assert rollouts.column("finish_reason").to_pylist() == reference.column("finish_reason").to_pylist()
    logprobs = zip(rollouts.column("token_logprobs").to_pylist(), reference.column("token_logprobs").to_pylist())
    for ours, theirs in logprobs:
        np.testing.assert_allclose(ours, theirs, atol=1e-3)  # both at temperature 1
