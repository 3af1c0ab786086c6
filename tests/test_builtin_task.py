"""The built-in task: deterministic cached builds, loadable model and tokenizer, splits, graded reward."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from actors.contracts import InputError
from actors.rewards.programmatic import get_reward
from cluster.data import builtin_task
from cluster.data.builtin_task import OPERATIONS, ensure_builtin_task
from cluster.config import BuiltinTaskSection

# Small enough to build in about a second; the defaults take ~15 s and are measured elsewhere.
SMALL = dict(
    num_train_prompts=40,
    num_heldout_prompts=12,
    hidden_size=32,
    num_layers=1,
    num_attention_heads=2,
    warm_start_steps=4,
    warm_start_batch_size=4,
)


def small_cfg(cache_dir: Path, **overrides) -> BuiltinTaskSection:
    return BuiltinTaskSection(cache_dir=str(cache_dir), **{**SMALL, **overrides})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = small_cfg(tmp_path_factory.mktemp("builtin"))
    return cfg, ensure_builtin_task(cfg)


def weights(task) -> dict[str, torch.Tensor]:
    return load_file(str(Path(task.model_dir) / "model.safetensors"))


# --- build, cache, atomicity ------------------------------------------------------------------------


def test_same_config_builds_identical_splits_and_weights(built, tmp_path):
    cfg, first = built
    second = ensure_builtin_task(cfg.model_copy(update={"cache_dir": str(tmp_path)}))
    assert Path(second.model_dir).parent.name == Path(first.model_dir).parent.name  # same cache key
    for split in ("train_path", "heldout_path"):
        assert pq.read_table(getattr(first, split)).equals(pq.read_table(getattr(second, split)))
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_another_seed_builds_another_task(built, tmp_path):
    cfg, first = built
    other = ensure_builtin_task(cfg.model_copy(update={"cache_dir": str(tmp_path), "seed": cfg.seed + 1}))
    assert Path(other.model_dir).parent.name != Path(first.model_dir).parent.name
    assert not pq.read_table(other.train_path).equals(pq.read_table(first.train_path))
    a, b = weights(first), weights(other)
    assert any(not torch.equal(a[name], b[name]) for name in a)


def test_cache_dir_is_not_part_of_the_key(tmp_path):
    key = builtin_task.cache_key
    assert key(small_cfg(tmp_path / "a")) == key(small_cfg(tmp_path / "b"))
    assert key(small_cfg(tmp_path)) != key(small_cfg(tmp_path, seed=7))


def test_second_call_reuses_the_cache_without_building(built, monkeypatch):
    cfg, first = built
    model_file = Path(first.model_dir) / "model.safetensors"
    mtime = model_file.stat().st_mtime_ns

    def must_not_build(*args, **kwargs):
        raise AssertionError("a cached task was rebuilt")

    monkeypatch.setattr(builtin_task, "build_task", must_not_build)
    assert ensure_builtin_task(cfg) == first
    assert model_file.stat().st_mtime_ns == mtime


def test_concurrent_callers_build_once_and_agree(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)
    real_build = builtin_task.build_task
    builds: list[int] = []

    def slow_counting_build(*args, **kwargs):
        builds.append(1)
        time.sleep(0.3)  # widen the window in which a second caller could start its own build
        real_build(*args, **kwargs)

    monkeypatch.setattr(builtin_task, "build_task", slow_counting_build)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(ensure_builtin_task(cfg))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(results) == 3 and len(set(results)) == 1
    # Only the finished entry and its lock file remain: no staging folders.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        builtin_task.cache_key(cfg)
    ]


def test_failed_build_leaves_nothing_behind_and_next_call_builds(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)

    def half_build(cfg, out_dir):
        (out_dir / "train.parquet").write_bytes(b"partial")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(builtin_task, "build_task", half_build)
    with pytest.raises(RuntimeError, match="mid-build"):
        ensure_builtin_task(cfg)
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    task = ensure_builtin_task(cfg)
    assert pq.read_table(task.train_path).num_rows == cfg.num_train_prompts


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"operations": ["copy", "shuffle"]}, "shuffle"),
        ({"operations": ["copy", "copy"]}, "twice"),
        ({"min_length": 5, "max_length": 3}, "min_length"),
        ({"hidden_size": 30, "num_attention_heads": 4}, "num_attention_heads"),
    ],
)
def test_bad_config_is_an_input_error(tmp_path, overrides, message):
    with pytest.raises(InputError, match=message):
        ensure_builtin_task(small_cfg(tmp_path, **overrides))


def test_too_many_prompts_for_the_space_is_an_input_error(tmp_path):
    # Length-1 sequences over one operation: only 10 distinct prompts exist.
    cfg = small_cfg(tmp_path, operations=["copy"], min_length=1, max_length=1, num_train_prompts=20)
    with pytest.raises(InputError, match="distinct prompts"):
        ensure_builtin_task(cfg)


# --- model and tokenizer ----------------------------------------------------------------------------


def test_model_and_tokenizer_load_and_generate(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    _, task = built
    tokenizer = AutoTokenizer.from_pretrained(task.model_dir)
    model = AutoModelForCausalLM.from_pretrained(task.model_dir)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<pad>", "<bos>", "<eos>")
    assert model.config.vocab_size == len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "reverse: 3 1 4"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<bos><|user|> reverse: 3 1 4 <|end|> <|assistant|>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<bos>", "<|user|>", "reverse:", "3", "1", "4", "<|end|>", "<|assistant|>"
    ]
    out = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > len(ids)


def test_response_decodes_to_the_answer_text(built):
    from transformers import AutoTokenizer

    _, task = built
    tokenizer = AutoTokenizer.from_pretrained(task.model_dir)
    _, response_ids = builtin_task.encode_example(tokenizer, "sort: 3 1 2", "sort 1 2 3")
    assert response_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in response_ids
    assert tokenizer.decode(response_ids, skip_special_tokens=True) == "sort 1 2 3"


# --- splits and demonstrations ------------------------------------------------------------------------


def test_splits_have_the_contract_columns_and_correct_answers(built):
    cfg, task = built
    train, heldout = pq.read_table(task.train_path), pq.read_table(task.heldout_path)
    assert (train.num_rows, heldout.num_rows) == (cfg.num_train_prompts, cfg.num_heldout_prompts)
    assert train.schema.names == ["prompt_id", "prompt", "answer", "task", "difficulty"]
    assert train.schema.field("difficulty").type == pa.int32()
    for row in train.to_pylist():
        operation, digits_text = row["prompt"].split(": ")
        digits = [int(d) for d in digits_text.split()]
        assert operation == row["task"]
        assert row["answer"] == " ".join([operation, *map(str, OPERATIONS[operation](digits))])
        assert cfg.min_length <= len(digits) <= cfg.max_length


def test_train_and_heldout_are_disjoint_and_ids_unique(built):
    _, task = built
    train, heldout = pq.read_table(task.train_path), pq.read_table(task.heldout_path)
    train_ids, heldout_ids = train.column("prompt_id").to_pylist(), heldout.column("prompt_id").to_pylist()
    assert len(set(train_ids)) == len(train_ids) and len(set(heldout_ids)) == len(heldout_ids)
    assert not set(train_ids) & set(heldout_ids)
    assert not set(train.column("prompt").to_pylist()) & set(heldout.column("prompt").to_pylist())


def test_difficulty_spreads_over_operations_and_lengths(built):
    cfg, task = built
    train = pq.read_table(task.train_path)
    assert set(train.column("task").to_pylist()) == set(cfg.operations)
    difficulties = train.column("difficulty").to_pylist()
    assert max(difficulties) - min(difficulties) >= 4
    # copy (the first operation) is the easiest at any length; sort (the last) the hardest.
    tasks = train.column("task").to_pylist()
    by_task = {op: [d for d, t in zip(difficulties, tasks) if t == op] for op in cfg.operations}
    assert np.mean(by_task["copy"]) < np.mean(by_task["sort"])


def test_confusion_rises_from_none_for_the_first_operation_to_the_setting_for_the_last(tmp_path):
    cfg = small_cfg(tmp_path, warm_start_confusion=1.0, warm_start_steps=100)
    assert builtin_task.confusion_probability(cfg, "copy") == 0.0
    assert builtin_task.confusion_probability(cfg, "sort") == 1.0
    _, _, demonstrations = builtin_task.make_splits(cfg)
    named = {op: [] for op in cfg.operations}
    for prompt, response in demonstrations:
        named[prompt.split(":")[0]].append(response.split()[0])
    assert all(name == "copy" for name in named["copy"])  # never confused
    assert all(name != "sort" for name in named["sort"])  # always confused
    assert 0 < np.mean([name == "reverse" for name in named["reverse"]]) < 1


def test_demonstrations_avoid_every_train_and_heldout_prompt(tmp_path):
    cfg = small_cfg(tmp_path, min_length=1, max_length=2, warm_start_steps=50)
    train, heldout, demonstrations = builtin_task.make_splits(cfg)
    evaluated = set(train.column("prompt").to_pylist()) | set(heldout.column("prompt").to_pylist())
    assert not evaluated & {prompt for prompt, _ in demonstrations}


# --- reward -------------------------------------------------------------------------------------------


def score(answers: list, responses: list) -> np.ndarray:
    return get_reward("builtin_task")(pa.table({"answer": answers, "response": responses}))


def test_reward_is_graded():
    answer = "reverse 5 1 4 1 3"
    rewards = score(
        [answer] * 6,
        [
            "reverse 5 1 4 1 3",  # exact
            "reverse 5 1 4 1 9",  # one item wrong
            "reverse 5 1 4",  # too short
            "reverse 5 1 4 1 3 3",  # too long
            "sort 1 1 3 4 5",  # another operation
            "",
        ],
    )
    assert rewards.dtype == np.float64
    assert rewards[0] == 1.0
    assert rewards[1] == pytest.approx(5 / 6)
    assert rewards[2] == pytest.approx(4 / 6)
    assert rewards[3] == pytest.approx(6 / 7)
    assert 0.0 <= rewards[4] < 0.5
    assert rewards[5] == 0.0
    assert np.all(rewards[1:4] < 1.0) and np.all(rewards[1:4] > 0.5)


def test_reward_keeps_row_order_and_marks_missing_answers_nan():
    rewards = score(["copy 1 2", None, "copy 3"], ["copy 1 2", "copy 1", "copy 4"])
    assert rewards[0] == 1.0 and np.isnan(rewards[1]) and rewards[2] == pytest.approx(0.5)


def test_exact_reward_is_one_for_the_exact_answer_only():
    answers = ["reverse 5 1 4"] * 5 + [None]
    responses = ["reverse 5 1 4", " reverse  5 1 4 ", "reverse 5 1 9", "reverse 5 1 4 4", None, "copy 1"]
    rewards = get_reward("builtin_task_exact")(pa.table({"answer": answers, "response": responses}))
    assert rewards[:5].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0] and np.isnan(rewards[5])
    with pytest.raises(InputError, match="builtin_task_exact reward needs"):
        get_reward("builtin_task_exact")(pa.table({"response": ["copy 1"]}))


def test_reward_without_answer_column_is_an_input_error():
    with pytest.raises(InputError, match="built-in task's prompts") as error:
        get_reward("builtin_task")(pa.table({"prompt": ["copy: 1"], "response": ["copy 1"]}))
    assert "answer" in str(error.value)
