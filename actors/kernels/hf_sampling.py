"""The Hugging Face transformers generation backend: a causal LM ready to sample, and a sampled batch with log-probs.

`load_causal_lm` loads through actors/kernels/hf_model.py and adds what sampling needs (stop ids,
pad id, a clean generation config).

`sample_batch` runs `model.generate` on left-padded prompts and returns, for every sampled response,
its token ids (cut after the first stop token) and the log-probability of each token under the
distribution it was actually drawn from (after temperature and top-p). With `greedy` (the benchmark
evaluation's decoding) it takes the argmax token at each step instead, and records each chosen token's
log-probability under the unmodified model distribution (temperature 1, no top-p): the distribution a
greedy token is "drawn from" is a point mass, whose log-prob 0 says nothing, and temperature and top-p
do not change the argmax.

Why temperature and top-p are applied by our own processor instead of generate's built-in warpers:
generate appends user processors *before* its warpers, and `output_scores` keeps a (rows x vocab)
tensor for every step (gigabytes for a real vocabulary). `SampledTokenLogprobs` is the last processor
(generate's own warpers are switched off), so its output is exactly what generate samples from; it
keeps only the previous step's log-probs and reads off the token sampled from them one step later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from actors.contracts import InputError
from actors.kernels.devices import pick_device
from actors.kernels.hf_model import check_model_folder, load_model, load_tokenizer, pad_token_id


@dataclass
class CausalLM:
    """A loaded policy with the token ids generation needs."""

    model: PreTrainedModel
    tokenizer: object
    pad_id: int
    stop_ids: list[int]
    device: torch.device


@dataclass
class BatchSamples:
    """Responses for one batch, `num_samples` consecutive rows per prompt, in prompt order."""

    response_token_ids: list[list[int]]
    token_logprobs: list[np.ndarray]  # float32, one value per response token
    finish_reasons: list[str]  # 'stop' (a stop token was generated) or 'length'


def load_causal_lm(model_path: str, dtype: str, trust_remote_code: bool, device: str | None = None) -> CausalLM:
    """Load model (safetensors only) and tokenizer from a local folder, in eval mode."""
    check_model_folder(model_path, dtype=dtype)
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    model = load_model(model_path, dtype, trust_remote_code)
    target = pick_device(device)
    model.to(target).eval()
    stop_ids = stop_token_ids(model.generation_config, tokenizer)
    # Padding is masked out, so reusing eos is safe when neither defines a pad id.
    pad_id = pad_token_id(tokenizer, model.generation_config.pad_token_id, default=stop_ids[0])
    # A clean generation config: the checkpoint's sampling defaults (top_k, repetition penalty, ...)
    # would otherwise silently change the distribution we sample from and record.
    model.generation_config = GenerationConfig(
        bos_token_id=model.generation_config.bos_token_id, eos_token_id=stop_ids, pad_token_id=pad_id
    )
    return CausalLM(model=model, tokenizer=tokenizer, pad_id=pad_id, stop_ids=stop_ids, device=target)


def stop_token_ids(generation_config: GenerationConfig, tokenizer) -> list[int]:
    """Every id that ends a response: the tokenizer's eos and the checkpoint's generation eos ids."""
    configured = generation_config.eos_token_id
    configured = [configured] if isinstance(configured, int) else list(configured or [])
    ids = ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []) + configured
    if not ids:
        raise InputError(
            "model.path: the tokenizer and generation config define no eos token; responses could never stop"
        )
    return list(dict.fromkeys(int(i) for i in ids))


class SampledTokenLogprobs(LogitsProcessor):
    """Applies temperature and top-p, and records log p(sampled token) under the result.

    Must be the last processor: generate samples from softmax(what this returns) (or, greedy, takes its
    argmax). The token drawn at step t is visible as input_ids[:, -1] at step t + 1, so each call records
    the previous step's.
    """

    def __init__(self, temperature: float, top_p: float):
        self.warpers = LogitsProcessorList()
        if temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.recorded: list[torch.Tensor] = []
        self._previous: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = self.warpers(input_ids, scores)
        self._record(input_ids[:, -1])
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _record(self, tokens: torch.Tensor) -> None:
        if self._previous is not None:
            self.recorded.append(self._previous.gather(-1, tokens[:, None]).squeeze(-1))

    def logprobs(self, generated: torch.Tensor) -> torch.Tensor:
        """(rows, steps) log-probs of `generated`; generate may have run (and undone) extra steps."""
        steps = generated.shape[1]
        if len(self.recorded) < steps:
            self._record(generated[:, len(self.recorded)])
        if len(self.recorded) < steps:
            raise RuntimeError(f"recorded {len(self.recorded)} sampling steps for {steps} generated tokens")
        return torch.stack(self.recorded[:steps], dim=1)


def left_pad(prompt_ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input ids and attention mask: generation continues every row from its last column."""
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        if ids:
            input_ids[row, width - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
    return input_ids, attention


@torch.inference_mode()
def sample_batch(
    lm: CausalLM,
    prompt_ids: list[list[int]],
    num_samples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    greedy: bool = False,
) -> BatchSamples:
    """Sample `num_samples` responses per prompt (seed torch's RNG before calling for reproducibility).

    `greedy`: the argmax token at each step, one response per prompt (`num_samples` must be 1); the
    temperature and top-p are ignored and token_logprobs are log-probs at temperature 1 (module docstring).
    """
    if greedy and num_samples != 1:
        raise ValueError(f"greedy decoding gives one response per prompt, not num_samples={num_samples}")
    input_ids, attention = left_pad(prompt_ids, lm.pad_id)
    # Greedy: the recorder applies no warper, so it records the unmodified distribution's log-probs.
    recorder = SampledTokenLogprobs(1.0, 1.0) if greedy else SampledTokenLogprobs(temperature, top_p)
    if greedy:
        decoding = dict(do_sample=False)
    else:
        # Our processor does temperature and top-p; generate's own warpers (incl. its default top_k=50) stay off.
        decoding = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
    config = GenerationConfig(
        **decoding,
        max_new_tokens=max_new_tokens,
        num_return_sequences=num_samples,
        eos_token_id=lm.stop_ids,
        pad_token_id=lm.pad_id,
    )
    sequences = lm.model.generate(
        input_ids=input_ids.to(lm.device),
        attention_mask=attention.to(lm.device),
        generation_config=config,
        logits_processor=LogitsProcessorList([recorder]),
    )
    generated = sequences[:, input_ids.shape[1] :]
    logprobs = recorder.logprobs(generated).float().cpu().numpy()
    return _cut_at_stop(generated.cpu().numpy(), logprobs, lm.stop_ids)


def _cut_at_stop(generated: np.ndarray, logprobs: np.ndarray, stop_ids: list[int]) -> BatchSamples:
    """Keep each row up to and including its first stop token; what follows is padding."""
    is_stop = np.isin(generated, stop_ids)
    tokens, values, reasons = [], [], []
    for row in range(generated.shape[0]):
        stops = np.flatnonzero(is_stop[row])
        end = int(stops[0]) + 1 if stops.size else generated.shape[1]
        tokens.append(generated[row, :end].tolist())
        values.append(logprobs[row, :end].astype(np.float32))
        reasons.append("stop" if stops.size else "length")
    return BatchSamples(response_token_ids=tokens, token_logprobs=values, finish_reasons=reasons)
