"""The HF generator: samples k responses per prompt from the current policy with transformers.

A plain class built from one `GeneratorSettings` (actors/settings.py) and no options of its own
(`generation.backend: hf`); the driver wraps it with
`ray.remote` (one model copy per actor). What both backends share (the constructor, the rollouts
table, tokenizing, weights versioning, model features) is in actors/generator_base.py; this backend
adds sampling (actors/kernels/hf_sampling.py) and loading weights into its model, which is also the
model the features are computed on. Sampling is seeded from
`SamplingParams.seed` and the prompt ids of each batch, so a chunk that Ray retries on a restarted
actor reproduces the same samples; `generate(..., weights=handle)` first loads the weights a restarted
actor lost. Output columns and types are the rollouts table of docs/tables.md.
"""

from __future__ import annotations

import torch

from actors.generator_base import GENERATOR_BACKENDS, GeneratorBase, batch_seed
from actors.kernels.hf_sampling import BatchSamples, CausalLM, sample_batch
from actors.kernels.logprobs import sequence_logprobs
from actors.options import KindOptions
from actors.settings import GeneratorSettings, SamplingParams
from actors.weight_sync import WeightsHandle

__all__ = ["Generator", "GeneratorSettings", "SamplingParams", "batch_seed"]

SCORING_BATCH = 32  # sequences per forward pass in sequence_logprobs


@GENERATOR_BACKENDS.register("hf")
class Generator(GeneratorBase):
    """One copy of the policy that samples rollouts with transformers and accepts new weights."""

    def __init__(self, settings: GeneratorSettings, options: KindOptions | None = None):
        """`options`: the config's `{kind: hf}`, taken so every backend is built alike; HF has none to read."""
        super().__init__(settings)
        torch.set_num_threads(settings.torch_threads)
        self._lm = self._load_hf_lm()  # samples, takes the new weights and answers the model features
        self._apply_initial_adapter()

    @property
    def _tokenizer(self):
        return self._lm.tokenizer

    def _sample(self, prompt_ids: list[str], prompt_tokens: list[list[int]], sampling: SamplingParams) -> BatchSamples:
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
                greedy=sampling.greedy,
            )
            samples.response_token_ids += batch.response_token_ids
            samples.token_logprobs += batch.token_logprobs
            samples.finish_reasons += batch.finish_reasons
        return samples

    def _apply_weights(self, handle: WeightsHandle) -> None:
        self._load_hf_weights(self._lm.model, handle)

    def _feature_lm(self) -> CausalLM:
        return self._lm

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
