"""The built-in synthetic task: a tiny Llama policy, its tokenizer and prompt splits, built locally.

The quickstart and the tests need a policy that is partly competent at a verifiable task, so that
online DPO has something to improve and the improvement is measurable, without any download. The
task is a set of small symbolic operations over digit sequences ("reverse: 3 1 4" -> "4 1 3"); the
`builtin_task` programmatic reward (actors/builtin_task_reward.py) grades a response per position.
Sequence length and operation give a spread of difficulty, so after the short supervised warm start
some prompts are always answered right, some never, and the rest sometimes: the prompts whose
preference variance a selection policy is meant to find.

`ensure_builtin_task` builds everything deterministically from the config and caches it under a
hash of the config, building into a temporary folder that is renamed into place under a file lock,
so concurrent callers (several Ray actors, parallel tests) never see or produce a half-built task.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from filelock import FileLock

from actors.errors import InputError
from cluster.config import BuiltinTaskSection

# Bump whenever a change here alters what gets built, so stale caches are never reused.
CODE_VERSION = "1"

DEFAULT_CACHE_ROOT = Path("~/.cache/activedpo/builtin")
TRAIN_FILE = "train.parquet"
HELDOUT_FILE = "heldout.parquet"
MODEL_SUBDIR = "model"

# Each operation maps the prompt's digits to the answer's digits.
OPERATIONS: dict[str, Callable[[list[int]], list[int]]] = {
    "copy": lambda xs: list(xs),
    "increment": lambda xs: [(x + 1) % 10 for x in xs],
    "reverse": lambda xs: xs[::-1],
    "sort": lambda xs: sorted(xs),
}

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} "
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}<|end|>{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class BuiltinTask:
    """Where a built task lives: a Hugging Face model folder (with tokenizer) and two parquet splits."""

    model_dir: str
    train_path: str
    heldout_path: str


def ensure_builtin_task(cfg: BuiltinTaskSection) -> BuiltinTask:
    """Return the task for `cfg`, building and caching it first if no complete build exists."""
    _check_config(cfg)
    root = Path(cfg.cache_dir or DEFAULT_CACHE_ROOT).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    final_dir = root / cache_key(cfg)
    if not final_dir.is_dir():
        with FileLock(str(final_dir) + ".lock"):
            # Another process may have finished the build while this one waited for the lock.
            if not final_dir.is_dir():
                _build_atomically(cfg, final_dir)
    return BuiltinTask(
        model_dir=str(final_dir / MODEL_SUBDIR),
        train_path=str(final_dir / TRAIN_FILE),
        heldout_path=str(final_dir / HELDOUT_FILE),
    )


def cache_key(cfg: BuiltinTaskSection) -> str:
    """Short hash of every field that changes the build (not where it is cached) and of the code version."""
    fields = cfg.model_dump(exclude={"cache_dir"})
    payload = json.dumps({"code_version": CODE_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_config(cfg: BuiltinTaskSection) -> None:
    unknown = sorted(set(cfg.operations) - set(OPERATIONS))
    if unknown:
        raise InputError(
            f"builtin_task.operations: unknown {unknown}; choose from {sorted(OPERATIONS)}"
        )
    if cfg.min_length > cfg.max_length:
        raise InputError(
            f"builtin_task.min_length ({cfg.min_length}) is larger than max_length ({cfg.max_length})"
        )
    if cfg.hidden_size % cfg.num_attention_heads:
        raise InputError(
            f"builtin_task.hidden_size ({cfg.hidden_size}) must be a multiple of "
            f"num_attention_heads ({cfg.num_attention_heads})"
        )


def _build_atomically(cfg: BuiltinTaskSection, final_dir: Path) -> None:
    """Build next to `final_dir` and rename into place: a crash leaves no half-built cache entry."""
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.building-", dir=final_dir.parent))
    try:
        build_task(cfg, staging)
        os.rename(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_task(cfg: BuiltinTaskSection, out_dir: Path) -> None:
    """Write the splits, the tokenizer and the warm-started model into `out_dir` (no caching)."""
    train, heldout, warm_start = make_splits(cfg)
    pq.write_table(train, out_dir / TRAIN_FILE)
    pq.write_table(heldout, out_dir / HELDOUT_FILE)
    tokenizer = build_tokenizer()
    with _torch_threads(cfg.torch_threads):
        model = build_model(cfg, tokenizer)
        warm_start_model(model, tokenizer, warm_start, cfg)
    model_dir = out_dir / MODEL_SUBDIR
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)


# --- data -----------------------------------------------------------------------------------------


def make_splits(cfg: BuiltinTaskSection) -> tuple[pa.Table, pa.Table, list[tuple[str, str]]]:
    """Train pool, held-out split (disjoint prompts) and the warm start's (prompt, answer) examples.

    The warm-start examples are fresh draws that avoid every train and held-out prompt, so the
    policy's competence on both splits comes from generalisation alone and the two stay comparable.
    """
    rng = np.random.default_rng([cfg.seed, 0])
    seen: set[str] = set()
    heldout = _draw_unique(rng, cfg, cfg.num_heldout_prompts, seen)
    train = _draw_unique(rng, cfg, cfg.num_train_prompts, seen)
    warm_start = _draw_warm_start(np.random.default_rng([cfg.seed, 1]), cfg, seen)
    return _to_table(train), _to_table(heldout), warm_start


def format_prompt(operation: str, digits: list[int]) -> str:
    return f"{operation}: " + " ".join(map(str, digits))


def _draw_example(rng: np.random.Generator, cfg: BuiltinTaskSection) -> dict:
    operation = cfg.operations[int(rng.integers(len(cfg.operations)))]
    length = int(rng.integers(cfg.min_length, cfg.max_length + 1))
    digits = [int(d) for d in rng.integers(0, 10, size=length)]
    return {
        "prompt_id": f"{operation}-{''.join(map(str, digits))}",
        "prompt": format_prompt(operation, digits),
        "answer": " ".join(map(str, OPERATIONS[operation](digits))),
        "task": operation,
        "difficulty": length,
    }


def _draw_unique(rng: np.random.Generator, cfg: BuiltinTaskSection, count: int, seen: set[str]) -> list[dict]:
    rows: list[dict] = []
    # Short sequences have few distinct values; give up long before looping forever on a tiny space.
    for _ in range(100 * count + 1000):
        if len(rows) == count:
            return rows
        row = _draw_example(rng, cfg)
        if row["prompt_id"] not in seen:
            seen.add(row["prompt_id"])
            rows.append(row)
    raise InputError(
        f"builtin_task: cannot draw {count} distinct prompts with lengths {cfg.min_length}..{cfg.max_length}; "
        "lower num_train_prompts / num_heldout_prompts or raise max_length"
    )


def _draw_warm_start(rng: np.random.Generator, cfg: BuiltinTaskSection, exclude: set[str]) -> list[tuple[str, str]]:
    needed = cfg.warm_start_steps * cfg.warm_start_batch_size
    examples: list[tuple[str, str]] = []
    while len(examples) < needed:
        row = _draw_example(rng, cfg)
        if row["prompt_id"] not in exclude:
            examples.append((row["prompt"], _corrupt(rng, row["answer"], cfg.warm_start_noise)))
    return examples


def _corrupt(rng: np.random.Generator, answer: str, noise: float) -> str:
    """Replace each item by a random digit with probability `noise` (the demonstrations' imperfection)."""
    items = answer.split()
    flips = rng.random(len(items)) < noise
    digits = rng.integers(0, 10, size=len(items))
    return " ".join(str(d) if flip else item for item, flip, d in zip(items, flips, digits))


def _to_table(rows: list[dict]) -> pa.Table:
    schema = pa.schema(
        [("prompt_id", pa.string()), ("prompt", pa.string()), ("answer", pa.string()),
         ("task", pa.string()), ("difficulty", pa.int32())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


# --- tokenizer and model --------------------------------------------------------------------------


def build_tokenizer():
    """A word-level tokenizer over the task's words: one token per digit keeps sequences short."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [str(d) for d in range(10)] + [f"{name}:" for name in sorted(OPERATIONS)]
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
    )


def build_model(cfg: BuiltinTaskSection, tokenizer) -> torch.nn.Module:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=2 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def encode_example(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of the chat-formatted prompt and of the response (the answer then eos)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids, response_ids


def warm_start_model(model, tokenizer, examples: list[tuple[str, str]], cfg: BuiltinTaskSection) -> None:
    """Supervised steps on correct answers (loss on response tokens only), leaving the policy partly right."""
    from actors.logprobs import sequence_logprobs

    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.warm_start_learning_rate, weight_decay=0.0)
    model.train()
    batch = cfg.warm_start_batch_size
    for step in range(cfg.warm_start_steps):
        pairs = [encode_example(tokenizer, p, a) for p, a in examples[step * batch : (step + 1) * batch]]
        prompts, responses = zip(*pairs)
        logprobs = sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id)
        loss = -logprobs.sum() / sum(len(r) for r in responses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
