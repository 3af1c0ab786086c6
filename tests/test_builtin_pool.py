"""The built-in task's training pools: the natural default unchanged, the realistic pool's classes and
shares, exact pass rates against sampling, determinism, and config errors that name the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from actors.contracts import InputError
from actors.generator import Generator, SamplingParams
from actors.kernels.hf_model import load_model, load_tokenizer
from actors.kernels.logprobs import sequence_logprobs
from actors.rewards.programmatic import get_reward
from actors.settings import GeneratorSettings
from cluster.config import BuiltinPoolSection, BuiltinTaskSection
from cluster.config_loading import load_config
from cluster.data import builtin_task
from cluster.data.builtin_pool import POOL_CLASSES, answer_pass_rates, class_counts, classify, draw_pool
from cluster.data.builtin_task import ensure_builtin_task
from cluster.data.prompts import prompt_texts

REALISTIC = BuiltinPoolSection(preset="realistic")


# --- the natural pool is what it always was ---------------------------------------------------------------


def split_digest(table: pa.Table) -> str:
    rows = zip(table.column("prompt_id").to_pylist(), table.column("prompt").to_pylist())
    return hashlib.sha256("\n".join(f"{i}\t{p}" for i, p in rows).encode()).hexdigest()[:16]


def test_the_default_pool_and_cache_key_are_unchanged():
    # Recorded before pools existed: the same key reuses every cached build, the same splits keep the
    # quickstart, the tests and the benchmarks' numbers. Failing here means the default task changed.
    cfg = BuiltinTaskSection()
    assert builtin_task.cache_key(cfg) == "e974aea291ee77f4"
    train, heldout, _ = builtin_task.make_splits(cfg)
    assert (split_digest(train), split_digest(heldout)) == ("e093795935128b21", "60b1db30dd0439fa")
    assert train.column("prompt_id").to_pylist()[:3] == ["reverse-431080", "copy-4989", "reverse-7342"]
    assert train.schema.names == ["prompt_id", "prompt", "answer", "task", "difficulty"]


def test_the_pool_is_not_part_of_the_task_key():
    natural, realistic = BuiltinTaskSection(), BuiltinTaskSection(pool={"preset": "realistic"})
    assert builtin_task.cache_key(natural) == builtin_task.cache_key(realistic)
    key = builtin_task.pool_cache_key(realistic)
    assert key.startswith(builtin_task.cache_key(realistic) + "-pool-")
    assert key != builtin_task.pool_cache_key(BuiltinTaskSection(pool={"preset": "custom", "solved": 0.5,
                                                                         "unsolved": 0.5, "mixed": 0.0}))


# --- pure pieces ------------------------------------------------------------------------------------------


def test_class_counts_sum_to_the_total_and_respect_zero_shares():
    assert class_counts({"solved": 0.4, "unsolved": 0.3, "mixed": 0.3}, 512) == {"solved": 205, "unsolved": 154,
                                                                                 "mixed": 153}
    assert class_counts({"solved": 0.5, "unsolved": 0.5, "mixed": 0.0}, 7) == {"solved": 4, "unsolved": 3, "mixed": 0}
    for total in range(1, 40):
        assert sum(class_counts({"solved": 0.4, "unsolved": 0.3, "mixed": 0.3}, total).values()) == total


def test_classify_uses_the_bounds_inclusively_and_leaves_the_gaps_out():
    rates = np.array([0.0, 0.05, 0.06, 0.2, 0.5, 0.8, 0.81, 0.9, 1.0])
    assert classify(rates, REALISTIC).tolist() == ["unsolved", "unsolved", "", "mixed", "mixed", "mixed", "", "solved",
                                                   "solved"]


def fake_source(seed: int):
    """Candidates numbered in draw order, with pass rates from a fixed random stream."""
    rng, drawn = np.random.default_rng(seed), []

    def draw() -> list[dict]:
        start = len(drawn)
        drawn.extend({"prompt_id": f"p{i}"} for i in range(start, start + 50))
        return drawn[start:]

    rates = {}

    def pass_rates(rows: list[dict]) -> np.ndarray:
        for row in rows:
            rates.setdefault(row["prompt_id"], float(rng.random() ** 2))
        return np.array([rates[row["prompt_id"]] for row in rows])

    return draw, pass_rates


def test_draw_pool_has_the_shares_is_shuffled_and_deterministic():
    rows, measured = draw_pool(*fake_source(0), REALISTIC, 40, np.random.default_rng(3))
    classes = [row["pool_class"] for row in rows]
    assert {name: classes.count(name) for name in POOL_CLASSES} == {"solved": 16, "unsolved": 12, "mixed": 12}
    assert measured["counts"] == {"solved": 16, "unsolved": 12, "mixed": 12} and measured["candidates"] % 50 == 0
    assert sum(measured["candidate_shares"].values()) == pytest.approx(1.0)
    assert all(classify(np.array([row["start_pass_rate"]]), REALISTIC)[0] == row["pool_class"] for row in rows)
    assert len({row["prompt_id"] for row in rows}) == 40
    assert classes != sorted(classes, key=POOL_CLASSES.index)  # interleaved, not in class blocks
    again, _ = draw_pool(*fake_source(0), REALISTIC, 40, np.random.default_rng(3))
    assert again == rows
    other, _ = draw_pool(*fake_source(1), REALISTIC, 40, np.random.default_rng(3))
    assert other != rows


def test_draw_pool_names_the_class_it_cannot_fill():
    draw, _ = fake_source(0)
    never_solved = lambda rows: np.linspace(0.0, 0.5, len(rows))  # noqa: E731
    with pytest.raises(InputError, match=r"only 0 are 'solved' \(pass rate >= 0.9\).*builtin_task.pool.solved"):
        draw_pool(draw, never_solved, REALISTIC, 40, np.random.default_rng(0), max_chunks=3)


# --- the realistic pool on the built-in task's model ------------------------------------------------------


@pytest.fixture(scope="module")
def realistic():
    """The realistic pool of the default task (both cached like the quickstart's task; ~10 s to build)."""
    cfg = BuiltinTaskSection(pool={"preset": "realistic"})
    task = ensure_builtin_task(cfg)
    return cfg, task, pq.read_table(task.train_path)


def test_realistic_pool_has_the_configured_shares_and_keeps_model_and_heldout(realistic):
    cfg, task, pool = realistic
    natural = ensure_builtin_task(BuiltinTaskSection())
    assert (task.model_dir, task.heldout_path) == (natural.model_dir, natural.heldout_path)
    assert pool.num_rows == cfg.num_train_prompts
    assert pool.schema.names == ["prompt_id", "prompt", "answer", "task", "difficulty", "pool_class", "start_pass_rate"]
    classes = pool.column("pool_class").to_pylist()
    shares = {name: classes.count(name) / pool.num_rows for name in POOL_CLASSES}
    assert shares == pytest.approx({"solved": 0.4, "unsolved": 0.3, "mixed": 0.3}, abs=1 / pool.num_rows)
    ids = pool.column("prompt_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(pq.read_table(task.heldout_path).column("prompt_id").to_pylist())
    _, _, demonstrations = builtin_task.make_splits(cfg)
    assert not set(pool.column("prompt").to_pylist()) & {prompt for prompt, _ in demonstrations}
    measured = json.loads((Path(task.train_path).parent / builtin_task.POOL_STATS_FILE).read_text())
    assert measured["counts"] == {name: classes.count(name) for name in POOL_CLASSES}


def test_each_class_has_the_pass_rate_its_name_says_measured_and_sampled(realistic):
    cfg, task, pool = realistic
    rates = np.array(pool.column("start_pass_rate").to_pylist())
    classes = np.array(pool.column("pool_class").to_pylist())
    assert rates[classes == "solved"].min() >= 0.9 and rates[classes == "unsolved"].max() <= 0.05
    assert 0.2 <= rates[classes == "mixed"].min() and rates[classes == "mixed"].max() <= 0.8
    # The stored rates are the model's: recomputed here at T = 1 as exp(log pi(answer + eos | prompt)).
    tokenizer = load_tokenizer(task.model_dir, False)
    model = load_model(task.model_dir, "float32", False).eval()
    rows = pool.slice(0, 32).to_pylist()
    encoded = [builtin_task.encode_example(tokenizer, row["prompt"], row["answer"]) for row in rows]
    with torch.no_grad():
        logps = sequence_logprobs(model, [p for p, _ in encoded], [a for _, a in encoded], tokenizer.pad_token_id)
    assert np.exp(logps.numpy()) == pytest.approx(rates[:32], rel=1e-4, abs=1e-6)
    # Sampled by the HF generator backend itself (the quickstart's sampling: T = 1, top-p 1), k = 16.
    generator = Generator(GeneratorSettings(task.model_dir))
    picked = pa.concat_tables([pool.filter(pc.equal(pool.column("pool_class"), name)).slice(0, 16)
                               for name in POOL_CLASSES])
    texts = prompt_texts(picked.column("prompt").to_pylist(), generator._lm.tokenizer, True)
    rollouts = generator.generate(picked.append_column("prompt_text", pa.array(texts)),
                                  SamplingParams(samples_per_prompt=16, max_new_tokens=12, seed=0))
    exact = get_reward("builtin_task_exact")(rollouts)
    by_class = np.array(rollouts.column("pool_class").to_pylist())
    sampled = {name: float(exact[by_class == name].mean()) for name in POOL_CLASSES}
    assert sampled["solved"] >= 0.9 and sampled["unsolved"] <= 0.05 and 0.2 <= sampled["mixed"] <= 0.8, sampled


def test_a_rebuild_is_identical(realistic, tmp_path):
    cfg, task, pool = realistic
    builtin_task.build_pool(cfg, task, tmp_path)
    assert pq.read_table(tmp_path / builtin_task.TRAIN_FILE).equals(pool)


def test_pass_rates_do_not_depend_on_the_batch(realistic):
    _, task, pool = realistic
    tokenizer = load_tokenizer(task.model_dir, False)
    model = load_model(task.model_dir, "float32", False).eval()
    rows = pool.slice(0, 20).to_pylist()
    encoded = [builtin_task.encode_example(tokenizer, row["prompt"], row["answer"]) for row in rows]
    prompts, answers = [p for p, _ in encoded], [a for _, a in encoded]
    whole = answer_pass_rates(model, prompts, answers, tokenizer.pad_token_id, 1.0)
    in_threes = answer_pass_rates(model, prompts, answers, tokenizer.pad_token_id, 1.0, batch_size=3)
    assert in_threes == pytest.approx(whole, rel=1e-5, abs=1e-7)
    # The temperature divides the logits: cooling makes a near-certain answer (every token the argmax) likelier.
    cold = answer_pass_rates(model, prompts, answers, tokenizer.pad_token_id, 0.5)
    assert np.any(whole > 0.9) and np.all(cold[whole > 0.9] > whole[whole > 0.9])


# --- config ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["builtin_task.pool={preset: custom, solved: 0.5, unsolved: 0.3, mixed: 0.3}"],
         r"builtin_task.pool: builtin_task.pool.solved \+ unsolved \+ mixed must sum to 1, got 1.1"),
        (["builtin_task.pool={preset: custom, solved: 0.5, unsolved: 0.5}"], r"needs builtin_task.pool.mixed"),
        (["builtin_task.pool.solved=0.5"], r"builtin_task.pool.solved is set but builtin_task.pool.preset is 'natural'"),
        (["builtin_task.pool={preset: realistic, mixed: 0.5}"], r"preset is 'realistic'"),
        (["builtin_task.pool.preset=hard"], r"builtin_task.pool.preset"),
        (["builtin_task.pool.solvd=0.5"], r"unknown key 'builtin_task.pool.solvd': did you mean 'solved'"),
        (["builtin_task.pool.solved=1.5"], r"builtin_task.pool.solved"),
        (["builtin_task.pool.mixed_max_pass_rate=0.95"], r"must not overlap"),
        (["builtin_task.pool.preset=realistic", "generation.temperature=0.7"],
         r"builtin_task.pool.temperature \(1\) differs from generation.temperature \(0.7\)"),
    ],
)
def test_bad_pool_settings_name_the_key(overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(None, overrides)


def test_pool_settings_that_validate():
    assert load_config(None, []).builtin_task.pool.shares() is None
    assert load_config(None, ["builtin_task.pool.preset=realistic"]).builtin_task.pool.shares() == {
        "solved": 0.4, "unsolved": 0.3, "mixed": 0.3}
    custom = load_config(None, ["builtin_task.pool={preset: custom, solved: 0.2, unsolved: 0.0, mixed: 0.8}"])
    assert custom.builtin_task.pool.shares() == {"solved": 0.2, "unsolved": 0.0, "mixed": 0.8}
    # Another temperature is fine when the pool is not the training data.
    load_config(None, ["builtin_task.pool.preset=realistic", "generation.temperature=0.7", "data.train.path=x.jsonl"])
    realistic = load_config(Path(__file__).parents[1] / "configs" / "builtin-realistic.yaml")
    assert realistic.builtin_task.pool.preset == "realistic"
    assert [spec.name for spec in realistic.scoring.rewards] == ["builtin_task_exact"]
