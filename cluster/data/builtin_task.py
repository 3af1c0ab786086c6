"""The built-in synthetic task: a tiny Llama policy, its tokenizer and prompt splits, built locally.

The quickstart and the tests need a policy that is partly competent at a verifiable task, so that
online DPO has something to improve and the improvement is measurable, without any download.
Prompts ask for an operation on a digit sequence ("reverse: 3 1 4"); the ideal response names the
operation it performs, then the result ("reverse 4 1 3"). The `builtin_task` reward
(actors/rewards/builtin_task.py) grades a response item by item against that answer.

The warm start imitates imperfect demonstrations: some perform another operation than the one
asked, never for the first operation listed and most often for the last. The policy ends up always
right on easy prompts (copy, short), never on the hardest (sort, long) and mixed in between: the
prompts whose preference variance a selection policy is meant to find. What DPO has to learn,
naming (and so performing) the operation asked for, is a choice made in the response's first
token, which keeps a pair's difference where the decision is. Variants whose errors were spread
over many tokens (noisy digits, an operation mixed up with no name first) were tried: there DPO on
this tiny model mostly learned side effects (stopping early, breaking execution) and the held-out
reward barely moved. Execution still degrades somewhat under DPO; the operation choice improves
faster, so the reward rises.

`ensure_builtin_task` builds everything deterministically from the config and caches it under a
hash of the config, building into a temporary folder that is renamed into place under a file lock,
so concurrent callers (several Ray actors, parallel tests) never see or produce a half-built task.
A training pool with configured shares of solved, unsolved and mixed prompts (`builtin_task.pool`,
cluster/data/builtin_pool.py) is a second cache entry beside the task, measured on its model; the
natural pool (the default) is the task's own split, and its cache key is what it always was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from filelock import FileLock

from actors.contracts import InputError
from cluster.config import BuiltinTaskSection
from cluster.data.builtin_pool import answer_pass_rates, draw_pool
from cluster.data.pool_fields import POOL_FIELDS

# Bump whenever a change here alters what gets built, so stale caches are never reused.
CODE_VERSION = "2"
# The same for a non-natural training pool (its own cache entry).
POOL_CODE_VERSION = "1"
POOL_STATS_FILE = "pool.json"

DEFAULT_CACHE_ROOT = Path("~/.cache/activedpo/builtin")
TRAIN_FILE = "train.parquet"
HELDOUT_FILE = "heldout.parquet"
MODEL_SUBDIR = "model"

# Each operation maps the prompt's digits to the result's digits.
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
PARQUET_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("answer", pa.string()),
        ("task", pa.string()),
        ("difficulty", pa.int32()),
    ]
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
    _ensure_built(final_dir, lambda out_dir: build_task(cfg, out_dir))
    task = BuiltinTask(
        model_dir=str(final_dir / MODEL_SUBDIR),
        train_path=str(final_dir / TRAIN_FILE),
        heldout_path=str(final_dir / HELDOUT_FILE),
    )
    if cfg.pool.preset == "natural":
        return task
    pool_dir = root / pool_cache_key(cfg)
    _ensure_built(pool_dir, lambda out_dir: build_pool(cfg, task, out_dir))
    return replace(task, train_path=str(pool_dir / TRAIN_FILE))


def cache_key(cfg: BuiltinTaskSection) -> str:
    """Short hash of every field that changes the task's build (not where it is cached, not the pool
    drawn from it: the model and held-out split are the same for every pool) and of the code version."""
    fields = cfg.model_dump(exclude={"cache_dir", "pool"})
    payload = json.dumps({"code_version": CODE_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def pool_cache_key(cfg: BuiltinTaskSection) -> str:
    """The pool's cache entry: the task's key, then a hash of the pool's settings and code version."""
    payload = json.dumps({"code_version": POOL_CODE_VERSION, **cfg.pool.model_dump()}, sort_keys=True)
    return f"{cache_key(cfg)}-pool-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def _ensure_built(final_dir: Path, build: Callable[[Path], None]) -> None:
    if not final_dir.is_dir():
        with FileLock(str(final_dir) + ".lock"):
            # Another process may have finished the build while this one waited for the lock.
            if not final_dir.is_dir():
                _build_atomically(build, final_dir)


def _check_config(cfg: BuiltinTaskSection) -> None:
    if len(set(cfg.operations)) != len(cfg.operations):
        raise InputError(f"builtin_task.operations lists an operation twice: {cfg.operations}")
    unknown = sorted(set(cfg.operations) - set(OPERATIONS))
    if unknown:
        raise InputError(f"builtin_task.operations: unknown {unknown}; choose from {sorted(OPERATIONS)}")
    if cfg.min_length > cfg.max_length:
        raise InputError(
            f"builtin_task.min_length ({cfg.min_length}) is larger than max_length ({cfg.max_length})"
        )
    if cfg.hidden_size % cfg.num_attention_heads:
        raise InputError(
            f"builtin_task.hidden_size ({cfg.hidden_size}) must be a multiple of "
            f"num_attention_heads ({cfg.num_attention_heads})"
        )


def _build_atomically(build: Callable[[Path], None], final_dir: Path) -> None:
    """Build next to `final_dir` and rename into place: a crash leaves no half-built cache entry."""
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.building-", dir=final_dir.parent))
    try:
        build(staging)
        os.rename(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_task(cfg: BuiltinTaskSection, out_dir: Path) -> None:
    """Write the splits, the tokenizer and the warm-started model into `out_dir` (no caching)."""
    train, heldout, demonstrations = make_splits(cfg)
    pq.write_table(train, out_dir / TRAIN_FILE)
    pq.write_table(heldout, out_dir / HELDOUT_FILE)
    tokenizer = build_tokenizer()
    # fork_rng: the build seeds torch itself and must not reseed the caller's generator.
    with _torch_threads(cfg.torch_threads), torch.random.fork_rng(devices=[]):
        model = build_model(cfg, tokenizer)
        warm_start_model(model, tokenizer, demonstrations, cfg)
    model_dir = out_dir / MODEL_SUBDIR
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)


def build_pool(cfg: BuiltinTaskSection, task: BuiltinTask, out_dir: Path) -> None:
    """Write the training pool of `cfg.pool` (builtin_pool.py) and what was measured into `out_dir`.

    Candidates come from their own random stream and avoid the held-out split and every warm-start
    demonstration, as the natural train split does; they may coincide with natural train prompts.
    """
    from actors.kernels.hf_model import load_model, load_tokenizer

    _, heldout, demonstrations = make_splits(cfg)
    seen = set(heldout.column("prompt_id").to_pylist()) | {_prompt_id_of(prompt) for prompt, _ in demonstrations}
    draw_rng = np.random.default_rng([cfg.seed, 2])
    tokenizer = load_tokenizer(task.model_dir, trust_remote_code=False)
    model = load_model(task.model_dir, "float32", trust_remote_code=False).eval()

    def pass_rates(rows: list[dict]) -> np.ndarray:
        encoded = [encode_example(tokenizer, row["prompt"], row["answer"]) for row in rows]
        return answer_pass_rates(model, [p for p, _ in encoded], [a for _, a in encoded], tokenizer.pad_token_id,
                                 cfg.pool.temperature)

    with _torch_threads(cfg.torch_threads):
        rows, measured = draw_pool(lambda: _draw_unique(draw_rng, cfg, max(cfg.num_train_prompts, 256), seen),
                                   pass_rates, cfg.pool, cfg.num_train_prompts, np.random.default_rng([cfg.seed, 3]))
    schema = pa.schema([*PARQUET_SCHEMA, *POOL_FIELDS])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out_dir / TRAIN_FILE)
    (out_dir / POOL_STATS_FILE).write_text(json.dumps({"pool": cfg.pool.model_dump(), **measured}, indent=2) + "\n")


# --- data -----------------------------------------------------------------------------------------


def make_splits(cfg: BuiltinTaskSection) -> tuple[pa.Table, pa.Table, list[tuple[str, str]]]:
    """Train pool, held-out split (disjoint prompts) and the warm start's (prompt, response) pairs.

    The demonstrations avoid every train and held-out prompt, so the policy's competence on both
    splits comes from generalisation alone and the two stay comparable.
    """
    rng = np.random.default_rng([cfg.seed, 0])
    seen: set[str] = set()
    heldout = _draw_unique(rng, cfg, cfg.num_heldout_prompts, seen)
    train = _draw_unique(rng, cfg, cfg.num_train_prompts, seen)
    demonstrations = _draw_demonstrations(np.random.default_rng([cfg.seed, 1]), cfg, seen)
    return (
        pa.Table.from_pylist(train, schema=PARQUET_SCHEMA),
        pa.Table.from_pylist(heldout, schema=PARQUET_SCHEMA),
        demonstrations,
    )


def format_prompt(operation: str, digits: list[int]) -> str:
    return f"{operation}: " + " ".join(map(str, digits))


def format_answer(operation: str, digits: list[int]) -> str:
    """The operation performed, then its result: "reverse 4 1 3"."""
    return " ".join([operation, *map(str, OPERATIONS[operation](digits))])


def confusion_probability(cfg: BuiltinTaskSection, operation: str) -> float:
    """Chance that a demonstration for `operation` performs another one: 0 for the first operation
    in `cfg.operations`, rising linearly to `warm_start_confusion` for the last. This is what spreads
    difficulty: prompts for the first operation end up always right, for the last mostly wrong."""
    rank, count = cfg.operations.index(operation), len(cfg.operations)
    return cfg.warm_start_confusion * (rank / (count - 1) if count > 1 else 1.0)


def difficulty(cfg: BuiltinTaskSection, operation: str, length: int) -> int:
    """A rough ordinal: the operation's rank in `cfg.operations` plus the digits beyond min_length."""
    return cfg.operations.index(operation) + length - cfg.min_length


def _draw_problem(rng: np.random.Generator, cfg: BuiltinTaskSection) -> tuple[str, list[int]]:
    operation = cfg.operations[int(rng.integers(len(cfg.operations)))]
    length = int(rng.integers(cfg.min_length, cfg.max_length + 1))
    return operation, [int(d) for d in rng.integers(0, 10, size=length)]


def _prompt_id(operation: str, digits: list[int]) -> str:
    # Content-based, so an id names the same prompt whatever the pool sizes.
    return f"{operation}-{''.join(map(str, digits))}"


def _prompt_id_of(prompt: str) -> str:
    """The id of a prompt text written by `format_prompt`."""
    operation, digits = prompt.split(": ")
    return _prompt_id(operation, [int(d) for d in digits.split()])


def _draw_unique(rng: np.random.Generator, cfg: BuiltinTaskSection, count: int, seen: set[str]) -> list[dict]:
    rows: list[dict] = []
    # Short sequences have few distinct values; give up rather than loop forever on a tiny space.
    for _ in range(100 * count + 1000):
        if len(rows) == count:
            return rows
        operation, digits = _draw_problem(rng, cfg)
        prompt_id = _prompt_id(operation, digits)
        if prompt_id not in seen:
            seen.add(prompt_id)
            rows.append(
                {
                    "prompt_id": prompt_id,
                    "prompt": format_prompt(operation, digits),
                    "answer": format_answer(operation, digits),
                    "task": operation,
                    "difficulty": difficulty(cfg, operation, len(digits)),
                }
            )
    raise InputError(
        f"builtin_task: cannot draw {count} more distinct prompts with lengths {cfg.min_length}.."
        f"{cfg.max_length}; lower num_train_prompts / num_heldout_prompts or raise max_length"
    )


def _draw_demonstrations(
    rng: np.random.Generator, cfg: BuiltinTaskSection, exclude: set[str]
) -> list[tuple[str, str]]:
    """Warm-start (prompt, response) pairs; some perform another operation than asked (see above)."""
    needed = cfg.warm_start_steps * cfg.warm_start_batch_size
    demonstrations: list[tuple[str, str]] = []
    while len(demonstrations) < needed:
        operation, digits = _draw_problem(rng, cfg)
        performed = operation
        others = [name for name in cfg.operations if name != operation]
        if others and rng.random() < confusion_probability(cfg, operation):
            performed = others[int(rng.integers(len(others)))]
        if _prompt_id(operation, digits) not in exclude:
            demonstrations.append((format_prompt(operation, digits), format_answer(performed, digits)))
    return demonstrations


# --- tokenizer and model --------------------------------------------------------------------------


def build_tokenizer():
    """A word-level tokenizer over the task's words: one token per digit keeps sequences short."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    operations = sorted(OPERATIONS)
    words = [str(d) for d in range(10)] + operations + [f"{name}:" for name in operations]
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


def encode_example(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """Token ids of the chat-formatted prompt and of the response followed by eos."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids, response_ids


def warm_start_model(
    model, tokenizer, demonstrations: list[tuple[str, str]], cfg: BuiltinTaskSection
) -> None:
    """Supervised steps on the demonstrations, loss on response tokens only.

    Linear warm-up then cosine decay: with a constant learning rate the tiny model learned the
    operations late and erratically, so the competence reached depended on the seed.
    """
    from actors.kernels.logprobs import sequence_logprobs

    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.warm_start_learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(cfg.warm_start_steps))
    model.train()
    batch = cfg.warm_start_batch_size
    for step in range(cfg.warm_start_steps):
        chunk = demonstrations[step * batch : (step + 1) * batch]
        prompts, responses = zip(*(encode_example(tokenizer, p, r) for p, r in chunk))
        logprobs = sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id)
        loss = -logprobs.sum() / sum(len(r) for r in responses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


def _warmup_cosine(total_steps: int, warmup_fraction: float = 0.1, final_fraction: float = 0.1):
    """Learning-rate factor per step: linear warm-up, then cosine decay to `final_fraction`."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
