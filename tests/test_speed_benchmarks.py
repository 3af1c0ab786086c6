"""The speed benchmarks count what their docstrings say (issue 27, "honest speed figures").

benchmarks/generation_throughput.py: every timed repeat of a vLLM arm starts from a cold prefix cache (the
actor's `reset_prefix_cache` before each one, after the warm-up too), outside the timing; the HF arm has no
cache to reset and does the same calls. benchmarks/weight_sync.py: the baseline is `safetensors.torch.load_file`
of the round's checkpoint and `load_state_dict` into the live model, nothing else, and leaves the model on the
file's tensors. Stand-ins and the tiny model only: no Ray, no vLLM engine (tests/test_vllm_generator.py calls
the new method on a real engine).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest
import ray
import safetensors.torch
import torch
import transformers
from tiny_model import build_tiny_model, build_tiny_tokenizer, tiny_llama_config
from transformers import AutoModelForCausalLM, LlamaForCausalLM

import actors.kernels.hf_sampling as hf_sampling
from actors.generator import SamplingParams
from actors.settings import GeneratorSettings
from actors.vllm_generator import VLLMGenerator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

import generation_throughput as throughput  # noqa: E402
import weight_sync as sync_bench  # noqa: E402

SAMPLING = SamplingParams(samples_per_prompt=2, temperature=1.0, top_p=1.0, max_new_tokens=4, batch_size=3, seed=0)
PROMPTS = pa.table({"prompt_id": ["a", "b", "c"], "prompt_text": ["x", "y", "z"]})


class _Remote:
    def __init__(self, function):
        self.remote = function


class StandInActor:
    """Answers `reset_prefix_cache.remote()` as a generator actor would, logging the call."""

    def __init__(self, log: list, answer: bool = True):
        self.reset_prefix_cache = _Remote(lambda: log.append("reset") or answer)


class StandInGroup:
    """A GeneratorGroup's `actors` and `generate`, logging each call with its prompt count."""

    def __init__(self, actors: int = 1, answer: bool = True):
        self.log: list = []
        self.actors = [StandInActor(self.log, answer) for _ in range(actors)]

    def generate(self, prompts, sampling, weights):
        self.log.append(("generate", prompts.num_rows))
        rows = prompts.num_rows * sampling.samples_per_prompt
        return pa.table({"response_token_ids": [[1, 2, 3]] * rows, "finish_reason": ["stop"] * rows})


@pytest.fixture
def ray_get_answers_directly(monkeypatch):
    """The stand-in actors answer at once: `ray.get` of their answers is the answers."""
    monkeypatch.setattr(ray, "get", lambda refs: refs)


def test_every_timed_vllm_repeat_starts_from_a_reset_prefix_cache(ray_get_answers_directly):
    group = StandInGroup(actors=2)
    result = throughput.time_generation(group, "vllm", PROMPTS, SAMPLING, repeats=3)
    # The warm-up (2 prompts), then before each timed call of the whole table every actor drops its cache:
    # no timed call reuses the warm-up's prefixes or an earlier repeat's.
    timed = ["reset", "reset", ("generate", 3)]
    assert group.log == [("generate", 2)] + timed * 3
    assert result["prefix_cache"] == "reset before each repeat" == throughput.PREFIX_CACHE_RESET
    assert result["prefix_cache_resets"] == 6 and len(result["runs"]) == 3
    assert result["runs"][0]["tokens"] == 3 * 2 * 3 and result["mean_response_tokens"] == 3
    assert result["warmup_seconds"] >= 0  # reported apart from the timed calls


def test_the_hf_arm_makes_the_same_generate_calls_with_no_cache_to_reset(ray_get_answers_directly):
    group = StandInGroup()
    result = throughput.time_generation(group, "hf", PROMPTS, SAMPLING, repeats=3)
    assert group.log == [("generate", 2)] + [("generate", 3)] * 3  # the vLLM arm's calls, less the resets
    assert result["prefix_cache"] == throughput.NO_PREFIX_CACHE and result["prefix_cache_resets"] == 0


def test_a_refused_reset_stops_the_benchmark_rather_than_time_a_warm_cache(ray_get_answers_directly):
    with pytest.raises(RuntimeError, match="did not reset its prefix cache"):
        throughput.time_generation(StandInGroup(answer=False), "vllm", PROMPTS, SAMPLING, repeats=1)


def test_the_vllm_generators_reset_is_the_engines():
    calls = []

    class Engine:
        def reset_prefix_cache(self, *args, **kwargs):
            calls.append((args, kwargs))
            return True

    generator = object.__new__(VLLMGenerator)  # no engine start: only the method's delegation
    generator._llm = Engine()
    assert generator.reset_prefix_cache() is True and calls == [((), {})]


def _perturbed_checkpoint(model_dir: Path, folder: Path, tied: bool = False) -> Path:
    """The model of `model_dir` (or a tied-embedding one) with every parameter moved, saved as a round's checkpoint."""
    if tied:
        torch.manual_seed(1)
        model = LlamaForCausalLM(tiny_llama_config(len(build_tiny_tokenizer()), tie_word_embeddings=True))
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    model.save_pretrained(folder)  # safetensors: weights and config only, as the learner's are
    return folder


def only_weights_may_load(monkeypatch) -> list[str]:
    """From here on: log `safetensors.torch.load_file` calls (file names), refuse every way to build a model,
    tokenizer, config or generation config again."""
    loads = []
    real_load_file = safetensors.torch.load_file
    monkeypatch.setattr(safetensors.torch, "load_file",
                        lambda path, *a, **k: loads.append(Path(path).name) or real_load_file(path, *a, **k))

    def refused(*args, **kwargs):
        raise AssertionError("the weight-sync baseline may only load_file and load_state_dict")

    for owner in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer, transformers.AutoConfig,
                  transformers.GenerationConfig, transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase):
        monkeypatch.setattr(owner, "from_pretrained", refused)
    monkeypatch.setattr(sync_bench, "load_causal_lm", refused)
    monkeypatch.setattr(hf_sampling, "load_causal_lm", refused)
    return loads


@pytest.mark.parametrize("tied", [False, True])
def test_the_weight_sync_baseline_is_load_file_then_load_state_dict_into_the_live_model(tmp_path, tied, monkeypatch):
    model_dir = build_tiny_model(tmp_path / "model")
    checkpoint = _perturbed_checkpoint(model_dir, tmp_path / "checkpoint", tied=tied)
    expected = safetensors.torch.load_file(str(checkpoint / "model.safetensors"))
    if tied:  # SmolLM2's case: the checkpoint holds the embedding once, the live model's head is the same tensor
        torch.manual_seed(2)
        model = LlamaForCausalLM(tiny_llama_config(len(build_tiny_tokenizer()), tie_word_embeddings=True))
        assert "lm_head.weight" not in expected
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    parameters = dict(model.named_parameters())  # the live model's own tensors, which must stay its own
    state_dicts = []
    real_load_state_dict = model.load_state_dict

    def load_state_dict(state, *args, **kwargs):
        state_dicts.append(sorted(state))
        return real_load_state_dict(state, *args, **kwargs)

    monkeypatch.setattr(model, "load_state_dict", load_state_dict)
    loads = only_weights_may_load(monkeypatch)

    phases = sync_bench.reload_state_dict(model, str(checkpoint))

    assert loads == ["model.safetensors"] and state_dicts == [sorted(expected)]
    assert set(phases) == {"read_seconds", "load_state_dict_seconds"}
    assert dict(model.named_parameters()).keys() == parameters.keys()
    for name, parameter in model.named_parameters():
        assert parameter is parameters[name]  # copied in place, not a new model
        key = "model.embed_tokens.weight" if tied and name == "lm_head.weight" else name
        assert torch.equal(parameter, expected[key]), name


def test_the_baseline_generator_reloads_only_the_weights(tmp_path, monkeypatch, restore_torch_threads):
    model_dir = build_tiny_model(tmp_path / "model")
    checkpoint = _perturbed_checkpoint(model_dir, tmp_path / "checkpoint")
    expected = safetensors.torch.load_file(str(checkpoint / "model.safetensors"))
    generator = sync_bench.BenchGenerator(GeneratorSettings(str(model_dir)))  # built the ordinary way
    lm, tokenizer = generator._lm, generator._lm.tokenizer
    loads = only_weights_may_load(monkeypatch)

    phases = generator.reload_from_disk(str(checkpoint))

    assert loads == ["model.safetensors"] and set(phases) == {"read_seconds", "load_state_dict_seconds"}
    assert generator._lm is lm and lm.tokenizer is tokenizer  # the same live model; tokenizer untouched
    for name, parameter in lm.model.named_parameters():
        assert torch.equal(parameter, expected[name]), name


def test_the_baseline_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    model_dir = build_tiny_model(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    state = {k: v for k, v in model.state_dict().items() if k != "model.norm.weight"}
    (tmp_path / "partial").mkdir()
    safetensors.torch.save_file(state, str(tmp_path / "partial" / "model.safetensors"))
    with pytest.raises(RuntimeError, match="model.norm.weight"):
        sync_bench.reload_state_dict(model, str(tmp_path / "partial"))
    with pytest.raises(FileNotFoundError):
        sync_bench.reload_state_dict(model, str(tmp_path))


def test_every_weight_sync_arm_says_what_it_counts():
    assert set(sync_bench.COUNTED) == {*sync_bench.TRANSPORTS, *sync_bench.BASELINES}
    for name in sync_bench.BASELINES:
        assert "safetensors.torch.load_file" in sync_bench.COUNTED[name]
        assert "load_state_dict" in sync_bench.COUNTED[name] and "nothing else" in sync_bench.COUNTED[name]
    assert "checkpoint" in sync_bench.NOT_COUNTED
