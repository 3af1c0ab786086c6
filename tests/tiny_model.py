"""Tiny, real Hugging Face models built in a fraction of a second, for tests that need a model.

`build_tiny_tokenizer()` makes a word-level `PreTrainedTokenizerFast` with pad/bos/eos/unk tokens, two
role tokens and a chat template; `build_tiny_model(folder)` saves it together with a randomly
initialised 2-layer `LlamaForCausalLM` (hidden 64, 4 heads) as safetensors, and
`build_tiny_classifier(folder)` does the same with a `LlamaForSequenceClassification` (num_labels=1),
usable as an `hf_classifier` reward model. Everything is seeded, so a folder built twice is identical.
`random_pairs_table(count)` is a seeded table of preference pairs over the vocabulary, learner input.

Vocabulary: ids 0..5 are `<pad> <s> </s> <unk> <|user|> <|assistant|>`, then the words below (about
100 tokens in all). Text is split on whitespace and punctuation; unknown words map to `<unk>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK, USER, ASSISTANT = "<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, USER, ASSISTANT]
WORDS = (
    "what is the sum of and plus minus times equals answer question a an it yes no please add "
    "subtract number numbers result good bad short long write say hello world cat dog red blue green "
    "one two three four five six seven eight nine ten zero"
).split()
VOCAB = SPECIAL_TOKENS + WORDS + list("0123456789") + list("abcdefghijklmnopqrstuvwxyz") + list(".,?!:+-=")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2

# One user turn and one assistant turn; the generation prompt ends with the assistant role token.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} "
    "{% if message['role'] == 'assistant' %}</s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_tokenizer(with_pad_token: bool = True, with_chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over VOCAB; `with_pad_token=False` mimics models that ship without one."""
    vocab = {token: index for index, token in enumerate(dict.fromkeys(VOCAB))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD if with_pad_token else None,
    )
    if with_chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama_config(vocab_size: int, **overrides) -> LlamaConfig:
    settings = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=False,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def build_tiny_model(
    folder: str | Path, seed: int = 0, with_pad_token: bool = True, with_chat_template: bool = True
) -> Path:
    """Save a tiny causal LM and its tokenizer to `folder` (safetensors); returns the folder."""
    folder = Path(folder)
    tokenizer = build_tiny_tokenizer(with_pad_token=with_pad_token, with_chat_template=with_chat_template)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), pad_token_id=PAD_ID if with_pad_token else None))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_classifier(folder: str | Path, seed: int = 0, with_chat_template: bool = True) -> Path:
    """Save a tiny sequence-classification reward model (one logit) and its tokenizer to `folder`."""
    folder = Path(folder)
    tokenizer = build_tiny_tokenizer(with_chat_template=with_chat_template)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=1))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_pairs_table(count: int, seed: int = 0) -> pa.Table:
    """`count` pairs of short random token sequences (word ids), chosen reward 1 and rejected 0."""
    rng = np.random.default_rng(seed)
    tokens = pa.list_(pa.int32())
    draw = lambda: rng.integers(6, 90, rng.integers(2, 6)).tolist()  # noqa: E731
    return pa.table({
        "prompt_id": [f"p{i}" for i in range(count)],
        "prompt_token_ids": pa.array([draw() for _ in range(count)], tokens),
        "chosen_token_ids": pa.array([draw() for _ in range(count)], tokens),
        "rejected_token_ids": pa.array([draw() for _ in range(count)], tokens),
        "chosen_reward": [1.0] * count,
        "rejected_reward": [0.0] * count,
    })
