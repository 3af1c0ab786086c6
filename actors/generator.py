"""The generator: samples k responses per prompt from the current policy, as an Arrow rollouts table.

A plain class; the driver wraps it with `ray.remote` (one model copy per actor). Generation itself
is in `actors/kernels/hf_sampling.py` (the HF transformers backend). Sampling is seeded from
`SamplingParams.seed` and the prompt ids of each batch, so a chunk that Ray retries on a restarted
actor reproduces the same samples; `generate(..., weights=handle)` first loads the weights a restarted
actor lost. Output columns and types are the rollouts table of docs/tables.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import torch

from actors.contracts import (
    EMBEDDINGS_SCHEMA,
    GENERATOR_PROMPT_COLUMNS,
    LOGPROBS_SCHEMA,
    LOGRATIOS_SCHEMA,
    PAIR_FEATURES_SCHEMA,
    ROLLOUT_FIELDS,
    InputError,
)
from actors.kernels.hf_sampling import BatchSamples, load_causal_lm, sample_batch
from actors.kernels.logprobs import sequence_logprobs
from actors.kernels.model_features import FeatureOptions, ModelSelectionFeatures
from actors.weight_sync import WeightsHandle, apply_weights

SCORING_BATCH = 32  # sequences per forward pass in sequence_logprobs


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: k responses per prompt, temperature, nucleus threshold, length, batching, seed."""

    samples_per_prompt: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 24
    batch_size: int = 64  # prompts per model.generate call (rows = batch_size * samples_per_prompt)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples_per_prompt < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"samples_per_prompt, max_new_tokens and batch_size must be >= 1: {self}")
        if not self.temperature > 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be > 0 and top_p in (0, 1]: {self}")


def batch_seed(seed: int, prompt_ids: list[str]) -> int:
    """A seed that depends only on the run's seed and the batch's prompt ids (stable across processes)."""
    digest = hashlib.sha256("\x1f".join([str(seed), *prompt_ids]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class Generator:
    """One copy of the policy that samples rollouts and accepts new weights."""

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        torch_threads: int = 1,
        trust_remote_code: bool = False,
        device: str | None = None,
        initial_version: int = 0,
    ):
        torch.set_num_threads(torch_threads)
        self._lm = load_causal_lm(model_path, dtype, trust_remote_code, device)
        self._model_path = model_path
        self._features: ModelSelectionFeatures | None = None
        # A resumed run starts from round N's checkpoint: its weights are version N, not 0.
        self._version = initial_version

    def node_id(self) -> str:
        """The Ray node this actor runs on (where the placement put it)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def weights_version(self) -> int:
        """Version of the loaded weights: `initial_version` for the model folder's own, else the handle's."""
        return self._version

    def load_weights(self, handle: WeightsHandle) -> int:
        """Load the weights behind `handle` (any transport) and return their version."""
        apply_weights(self._lm.model, handle)
        self._version = int(handle.version)
        return self._version

    def generate(self, prompts: pa.Table, sampling: SamplingParams, weights: WeightsHandle | None = None) -> pa.Table:
        """k samples per prompt: the prompts table's columns repeated per sample plus the rollout columns."""
        if weights is not None and weights.version != self._version:
            self.load_weights(weights)
        _check_prompts_table(prompts)
        prompt_ids = [str(i) for i in prompts.column("prompt_id").to_pylist()]
        prompt_tokens = self._tokenize(prompts.column("prompt_text").to_pylist(), prompt_ids)
        samples = BatchSamples([], [], [])
        for start in range(0, len(prompt_ids), sampling.batch_size):
            end = start + sampling.batch_size
            torch.manual_seed(batch_seed(sampling.seed, prompt_ids[start:end]))
            batch = sample_batch(
                self._lm,
                prompt_tokens[start:end],
                num_samples=sampling.samples_per_prompt,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens,
            )
            samples.response_token_ids += batch.response_token_ids
            samples.token_logprobs += batch.token_logprobs
            samples.finish_reasons += batch.finish_reasons
        responses = self._decode(samples.response_token_ids)
        return _rollouts_table(prompts, prompt_tokens, samples, responses, sampling.samples_per_prompt, self._version)

    @torch.inference_mode()
    def sequence_logprobs(self, prompt_token_ids: list[list[int]], response_token_ids: list[list[int]]) -> list[float]:
        """log pi(response | prompt) under the loaded weights, one float per pair."""
        values: list[float] = []
        for start in range(0, len(prompt_token_ids), SCORING_BATCH):
            end = start + SCORING_BATCH
            batch = sequence_logprobs(
                self._lm.model, prompt_token_ids[start:end], response_token_ids[start:end], self._lm.pad_id
            )
            values += batch.float().cpu().tolist()
        return values

    # --- selection features (actors/kernels/model_features.py) on the current weights ---------------------

    def response_logratios(self, table: pa.Table, options: FeatureOptions) -> pa.Table:
        """`logratio` (float64): log pi(y|x) - log pi_init(y|x) per row (prompt_token_ids, response_token_ids)."""
        values = self._selection_features(options).response_logratios(table)
        return pa.table({"logratio": pa.array(values, pa.float64())}, schema=LOGRATIOS_SCHEMA)

    def response_logprobs(self, table: pa.Table, options: FeatureOptions) -> pa.Table:
        """`logprob` and `ref_logprob` (float64): log pi(y|x) now and under the initial model, per row."""
        current, reference = self._selection_features(options).response_logprobs(table)
        return pa.table({"logprob": pa.array(current, pa.float64()), "ref_logprob": pa.array(reference, pa.float64())},
                        schema=LOGPROBS_SCHEMA)

    def prompt_gradient_norms(self, table: pa.Table, options: FeatureOptions, beta: float, tau: float) -> pa.Table:
        """Per prompt of `table` (whole prompts only): prompt_id, n_responses, gradient_norm (the DPO gradient at
        pi = pi_ref over the feature parameters; see actors.kernels.model_features.prompt_gradient_norms)."""
        return self._selection_features(options).prompt_gradient_norms(table, beta=beta, tau=tau)

    def prompt_embeddings(self, table: pa.Table, options: FeatureOptions) -> pa.Table:
        """`embedding` (list<float32>) per prompt row."""
        embeddings = self._selection_features(options).prompt_embeddings(table)
        return pa.table({"embedding": _list_array(list(embeddings), pa.float32())}, schema=EMBEDDINGS_SCHEMA)

    def pair_gradient_features(self, table: pa.Table, options: FeatureOptions) -> pa.Table:
        """`feature` (list<float32>) per pair row: the sketched gradient difference, not normalised."""
        features = self._selection_features(options).pair_gradient_features(table)
        return pa.table({"feature": _list_array(list(features), pa.float32())}, schema=PAIR_FEATURES_SCHEMA)

    def _selection_features(self, options: FeatureOptions) -> ModelSelectionFeatures:
        # The reference defaults to this actor's model folder: the run's initial model.
        options = options if options.reference_model_path else replace(options, reference_model_path=self._model_path)
        # Kept across calls (it holds the loaded reference model); it reads the live weights at every call.
        if self._features is None or self._features.options != options:
            self._features = ModelSelectionFeatures.from_causal_lm(self._lm, options, previous=self._features)
        return self._features

    def _decode(self, token_ids: list[list[int]]) -> list[str]:
        # batch_decode([]) returns [''] with some tokenizers.
        return self._lm.tokenizer.batch_decode(token_ids, skip_special_tokens=True) if token_ids else []

    def _tokenize(self, texts: list[str], prompt_ids: list[str]) -> list[list[int]]:
        # The chat template already wrote the special tokens into prompt_text.
        token_ids = self._lm.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        for prompt_id, ids in zip(prompt_ids, token_ids, strict=True):
            if not ids:
                raise InputError(
                    f"prompt {prompt_id!r} has no tokens (empty prompt_text); remove it from the prompt file"
                )
        return [list(ids) for ids in token_ids]


def _check_prompts_table(prompts: pa.Table) -> None:
    missing = [c for c in GENERATOR_PROMPT_COLUMNS if c not in prompts.column_names]
    clashing = [f.name for f in ROLLOUT_FIELDS if f.name in prompts.column_names]
    if missing or clashing:
        raise ValueError(
            f"generate() needs a prompts table with {list(GENERATOR_PROMPT_COLUMNS)} and none of the rollout "
            f"columns; missing {missing}, clashing {clashing} (columns: {prompts.column_names})"
        )


def _list_array(values: list, value_type: pa.DataType) -> pa.Array:
    """A list<value_type> array from per-row sequences, built from one flat buffer (fast for many rows)."""
    lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate([np.asarray(v) for v in values]) if values else np.array([])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(value_type.to_pandas_dtype())))


def _rollouts_table(
    prompts: pa.Table,
    prompt_tokens: list[list[int]],
    samples: BatchSamples,
    responses: list[str],
    samples_per_prompt: int,
    version: int,
) -> pa.Table:
    rows = np.repeat(np.arange(prompts.num_rows), samples_per_prompt)
    table = prompts.take(pa.array(rows, type=pa.int64()))
    columns = {
        "sample_index": pa.array(np.tile(np.arange(samples_per_prompt), prompts.num_rows), pa.int32()),
        "response": pa.array(responses, pa.string()),
        "prompt_token_ids": _list_array([prompt_tokens[r] for r in rows], pa.int32()),
        "response_token_ids": _list_array(samples.response_token_ids, pa.int32()),
        "sampling_logprob": pa.array(
            [float(np.sum(v, dtype=np.float64)) for v in samples.token_logprobs], pa.float64()
        ),
        "token_logprobs": _list_array(samples.token_logprobs, pa.float32()),
        "finish_reason": pa.array(samples.finish_reasons, pa.string()),
        "weights_version": pa.array(np.full(len(rows), version), pa.int32()),
    }
    for field in ROLLOUT_FIELDS:
        table = table.append_column(field, columns[field.name])
    return table
