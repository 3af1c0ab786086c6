"""What every generator backend shares: the rollouts table, tokenizing, weights versioning, model features.

A generator actor samples k responses per prompt from the current policy and returns them as the
rollouts table of docs/tables.md. `GeneratorBase` owns everything that does not depend on how
tokens are sampled:
- `generate`: checks the prompts table, tokenizes the prompts (the model folder's tokenizer, no
  special tokens added: the chat template wrote them), asks the backend for the samples, decodes
  them and assembles the rollouts table (`rollouts_table`);
- weights: `load_weights` applies a handle through the backend and keeps the version;
  `weights_version`, `node_id`;
- model features: `model_feature(table, name, options, ...)` answers any `ModelProbe` method
  (actors/contracts.py) with the in-process model probe (actors/kernels/model_probe.py) over an
  HF copy of the policy (`_feature_lm`), and sends the answer back as an Arrow table
  (`feature_table`); the driver's remote model probe (cluster/remote_model_probe.py) turns it back.

Every backend is built as `cls(settings, options)`: one `GeneratorSettings` (actors/settings.py: model
folder, dtype, remote code, threads, initial weights version), taken by the one constructor here, and its
own `Options`, the `generation.backend` choice the config validated (`{kind: <name>, ...}`; the HF
backend has none, vLLM's are actors/vllm_options.py). A backend's `__init__` calls the constructor here,
then loads its model or engine. A backend subclasses it and implements only sampling and its own weight
application: `_sample(prompt_ids, prompt_tokens, sampling) -> BatchSamples`, `_apply_weights(handle)`,
`_feature_lm()`, `sequence_logprobs(...)`, and sets a `_tokenizer`. It registers itself in
`GENERATOR_BACKENDS` under the name `generation.backend` takes (`@GENERATOR_BACKENDS.register("hf")`);
cluster/actor_groups.py picks the class from there. The config, which must not import this module
(torch, transformers), validates against actors/backend_options.py, which names the same Options. Backends: `Generator` (HF transformers,
actors/generator.py) and `VLLMGenerator` (actors/vllm_generator.py). This module runs in both venvs
(.venv and .venv-vllm): torch, transformers, numpy and pyarrow only, no vllm.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np
import pyarrow as pa

from actors.contracts import GENERATOR_PROMPT_COLUMNS, MODEL_PROBE_METHODS, ROLLOUT_FIELDS, InputError
from actors.kernels.hf_sampling import BatchSamples, CausalLM, load_causal_lm
from actors.kernels.model_probe import FeatureOptions, LocalModelProbe
from actors.options import KindOptions
from actors.registry import Registry
from actors.settings import GeneratorSettings, SamplingParams
from actors.weight_sync import WeightsHandle, apply_weights, make_transport
from actors.weight_sync.base import load_state

# Generator classes by `generation.backend` name; each backend module registers its class on import.
GENERATOR_BACKENDS: Registry[type] = Registry("generation backend")


def batch_seed(seed: int, prompt_ids: list[str]) -> int:
    """A seed that depends only on the run's seed and the batch's prompt ids (stable across processes)."""
    digest = hashlib.sha256("\x1f".join([str(seed), *prompt_ids]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class GeneratorBase:
    """One copy of the policy that samples rollouts, accepts new weights and answers model features."""

    _tokenizer: object  # the model folder's tokenizer; set (or provided as a property) by the backend
    # Its own options (`generation.backend: {kind: <name>, ...}`), declared once; a backend without any keeps
    # plain KindOptions. actors/backend_options.py names the same class for the config.
    Options: ClassVar[type[KindOptions]] = KindOptions

    def __init__(self, settings: GeneratorSettings):
        """The one constructor of every backend: a backend's own `__init__(settings, options)` calls it
        first, then loads its model or engine from `settings` and its `options`."""
        self._settings = settings
        # A resumed run starts from round N's checkpoint: its weights are version N, not 0.
        self._version = settings.initial_version
        self._local_probe: LocalModelProbe | None = None
        self._adapter: dict | None = None  # learner.lora: the adapter merged into the weights (None: none yet)

    # --- what a backend implements ------------------------------------------------------------------------

    def _sample(self, prompt_ids: list[str], prompt_tokens: list[list[int]], sampling: SamplingParams) -> BatchSamples:
        """`sampling.samples_per_prompt` samples per prompt, prompt-major, sample index minor."""
        raise NotImplementedError

    def _apply_weights(self, handle: WeightsHandle) -> None:
        """Put the weights behind `handle` into the sampling model (and any copy the features use)."""
        raise NotImplementedError

    def _feature_lm(self) -> CausalLM:
        """The in-process HF model (on the current weights) that model features are computed on."""
        raise NotImplementedError

    def sequence_logprobs(self, prompt_token_ids: list[list[int]], response_token_ids: list[list[int]]) -> list[float]:
        """log pi(response | prompt) under the loaded weights, one float per pair."""
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------------------

    def _load_hf_lm(self) -> CausalLM:
        """An HF copy of the policy in `settings.model_path` (the HF backend samples with it; the vLLM
        backend computes model features on it)."""
        settings = self._settings
        return load_causal_lm(settings.model_path, settings.model.dtype, settings.model.trust_remote_code)

    def _apply_initial_adapter(self) -> None:
        """A resumed LoRA run: the last round's adapter (settings.adapter_path) on the base; a backend's
        constructor calls it once its model is loaded."""
        if self._settings.adapter_path is not None:
            self._apply_weights(WeightsHandle(self._version, "disk", self._settings.adapter_path))

    def _merged_adapter(self, adapter: dict, everything: bool = False) -> dict:
        """Under learner.lora: the adapted modules' weights, base + scale x B A, the base read from model_path
        (`everything`: with the base's other tensors, a whole state dict)."""
        from actors.kernels.lora import merged_weights

        return merged_weights(adapter, self._settings.model_path, self._settings.lora.scale, everything)

    def _load_hf_weights(self, model, handle: WeightsHandle) -> None:
        """The weights behind `handle` into an in-process HF model: as they are, or under learner.lora the
        adapter the handle holds merged into the base modules."""
        if self._settings.lora is None:
            apply_weights(model, handle)
        else:
            adapter = make_transport(handle.transport).receive(handle)
            load_state(model, self._merged_adapter(adapter), handle.version, partial=True)
            self._adapter = adapter

    def node_id(self) -> str:
        """The Ray node this actor runs on (where the placement put it)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def weights_version(self) -> int:
        """Version of the loaded weights: `initial_version` for the model folder's own, else the handle's."""
        return self._version

    def load_weights(self, handle: WeightsHandle) -> int:
        """Load the weights behind `handle` (any transport) and return their version."""
        self._apply_weights(handle)
        self._version = int(handle.version)
        return self._version

    def generate(self, prompts: pa.Table, sampling: SamplingParams, weights: WeightsHandle | None = None) -> pa.Table:
        """k samples per prompt: the prompts table's columns repeated per sample plus the rollout columns."""
        if weights is not None and weights.version != self._version:
            self.load_weights(weights)
        check_prompts_table(prompts)
        prompt_ids = [str(i) for i in prompts.column("prompt_id").to_pylist()]
        prompt_tokens = self._tokenize(prompts.column("prompt_text").to_pylist(), prompt_ids)
        samples = self._sample(prompt_ids, prompt_tokens, sampling)
        responses = self._decode(samples.response_token_ids)
        return rollouts_table(prompts, prompt_tokens, samples, responses, sampling.samples_per_prompt, self._version)

    def model_feature(self, table: pa.Table, name: str, options: FeatureOptions, *args, **kwargs) -> pa.Table:
        """The `ModelProbe` method `name` (actors/contracts.py) over `table` on the current weights, as a table.

        The table comes first, as in every chunked actor call (cluster/actor_groups.py cuts it). `args`
        and `kwargs` go to the method (e.g. beta and tau of prompt_gradient_norms).
        """
        if name not in MODEL_PROBE_METHODS:
            raise ValueError(f"unknown model feature {name!r}; the ModelProbe methods are {list(MODEL_PROBE_METHODS)}")
        method = getattr(self._probe(options), name)
        return feature_table(method(table, *args, **kwargs), getattr(method, "result_columns", None))

    def _probe(self, options: FeatureOptions) -> LocalModelProbe:
        # The reference defaults to this actor's model folder: the run's initial model.
        if not options.reference_model_path:
            options = options.model_copy(update={"reference_model_path": self._settings.model_path})
        # Kept across calls (it holds the loaded reference model); it reads the live weights at every call.
        if self._local_probe is None or self._local_probe.options != options:
            self._local_probe = LocalModelProbe.from_causal_lm(self._feature_lm(), options, previous=self._local_probe)
        if self._settings.lora is not None:  # gradient features over the adapters, once the learner has sent some
            self._local_probe.use_adapter(self._adapter, self._settings.lora.scale)
        return self._local_probe

    def _decode(self, token_ids: list[list[int]]) -> list[str]:
        # batch_decode([]) returns [''] with some tokenizers.
        return self._tokenizer.batch_decode(token_ids, skip_special_tokens=True) if token_ids else []

    def _tokenize(self, texts: list[str], prompt_ids: list[str]) -> list[list[int]]:
        # The chat template already wrote the special tokens into prompt_text.
        token_ids = self._tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        for prompt_id, ids in zip(prompt_ids, token_ids, strict=True):
            if not ids:
                raise InputError(
                    f"prompt {prompt_id!r} has no tokens (empty prompt_text); remove it from the prompt file"
                )
        return [list(ids) for ids in token_ids]


# --- tables ---------------------------------------------------------------------------------------------


def check_prompts_table(prompts: pa.Table) -> None:
    missing = [c for c in GENERATOR_PROMPT_COLUMNS if c not in prompts.column_names]
    clashing = [f.name for f in ROLLOUT_FIELDS if f.name in prompts.column_names]
    if missing or clashing:
        raise ValueError(
            f"generate() needs a prompts table with {list(GENERATOR_PROMPT_COLUMNS)} and none of the rollout "
            f"columns; missing {missing}, clashing {clashing} (columns: {prompts.column_names})"
        )


def list_array(values: list, value_type: pa.DataType) -> pa.Array:
    """A list<value_type> array from per-row sequences, built from one flat buffer (fast for many rows)."""
    lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate([np.asarray(v) for v in values]) if values else np.array([])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(value_type.to_pandas_dtype())))


def rollouts_table(
    prompts: pa.Table,
    prompt_tokens: list[list[int]],
    samples: BatchSamples,
    responses: list[str],
    samples_per_prompt: int,
    version: int,
) -> pa.Table:
    """The prompts' columns repeated per sample, then ROLLOUT_FIELDS (docs/tables.md, the rollouts table)."""
    rows = np.repeat(np.arange(prompts.num_rows), samples_per_prompt)
    table = prompts.take(pa.array(rows, type=pa.int64()))
    columns = {
        "sample_index": pa.array(np.tile(np.arange(samples_per_prompt), prompts.num_rows), pa.int32()),
        "response": pa.array(responses, pa.string()),
        "prompt_token_ids": list_array([prompt_tokens[r] for r in rows], pa.int32()),
        "response_token_ids": list_array(samples.response_token_ids, pa.int32()),
        "sampling_logprob": pa.array(
            [float(np.sum(v, dtype=np.float64)) for v in samples.token_logprobs], pa.float64()
        ),
        "token_logprobs": list_array(samples.token_logprobs, pa.float32()),
        "finish_reason": pa.array(samples.finish_reasons, pa.string()),
        "weights_version": pa.array(np.full(len(rows), version), pa.int32()),
    }
    for field in ROLLOUT_FIELDS:
        table = table.append_column(field, columns[field.name])
    return table


def feature_table(value, columns: tuple[str, ...] | None = None) -> pa.Table:
    """A `ModelProbe` answer as an Arrow table, for the trip back to the driver.

    A table is sent as it is. An array, or a tuple of arrays, becomes one column each, named by
    `columns` (the method's `@result_columns`; default `value_0`, `value_1`, ...): a 1-D array as
    float64, a 2-D one as list<float32> (one list per row), the dtypes the protocol promises.
    """
    if isinstance(value, pa.Table):
        return value
    values = value if isinstance(value, tuple) else (value,)
    names = columns or tuple(f"value_{i}" for i in range(len(values)))
    return pa.table({name: _feature_column(np.asarray(v)) for name, v in zip(names, values, strict=True)})


def _feature_column(values: np.ndarray) -> pa.Array:
    if values.ndim == 1:
        return pa.array(values, pa.float64())
    if values.ndim == 2:
        return list_array(list(values), pa.float32())
    raise ValueError(f"a model feature must be a 1-D or 2-D array, got shape {values.shape}")
