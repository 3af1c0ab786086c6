"""A generator or scorer actor killed mid-call is restarted by Ray and the call still returns every row.

Seeds depend only on the prompts, so the retried chunk reproduces the same samples: the result
after a kill must equal the result without one.
"""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest
import ray

from cluster.actor_groups import GeneratorGroup, ScorerGroup
from cluster.config import GenerationSection, ModelSection, RewardSpec, ScoringSection
from tiny_model import build_tiny_classifier, build_tiny_model

pytestmark = pytest.mark.usefixtures("ray_cluster")


def actor_pid(actor) -> int:
    import os

    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))


def prompts_table(count: int) -> pa.Table:
    return pa.table({
        "prompt_id": [f"p{i}" for i in range(count)],
        "prompt": [f"what is {i % 10} plus {i % 7}" for i in range(count)],
        "prompt_text": [f"<|user|> what is {i % 10} plus {i % 7} <|assistant|>" for i in range(count)],
        "answer": [str(i % 10 + i % 7) for i in range(count)],
    })


# A warm call (the model loaded) must last this long, so that the kill lands in its middle on a fast machine
# too: sizes that took seconds on one build machine took 0.48 s on another.
WARM_SECONDS = 2.0


def sized_for_a_kill(call, size: int) -> tuple[int, pa.Table, float]:
    """Warm `call(size)` up (its first call loads the model), then double `size` until a warm call lasts
    WARM_SECONDS; returns the size, that call's result and its seconds."""
    call(size)
    for _ in range(8):
        started = time.perf_counter()
        result = call(size)
        seconds = time.perf_counter() - started
        if seconds >= WARM_SECONDS:
            return size, result, seconds
        size *= 2
    raise AssertionError(f"a call of {size // 2} rows still took {seconds:.2f} s, under {WARM_SECONDS} s")


def call_while_killing(call, actor, seconds: float) -> pa.Table:
    """Run `call` (about `seconds` long) in a thread and SIGKILL `actor` a quarter of the way in, while it is
    busy; returns what `call` returned."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("table", call()))
    worker.start()
    time.sleep(seconds / 4)
    assert worker.is_alive(), "the call ended before the kill: make it longer"
    ray.kill(actor, no_restart=False)
    worker.join(timeout=300)
    assert not worker.is_alive(), "the call never finished after the kill"
    return result["table"]


def test_generator_killed_mid_round_is_restarted_and_every_prompt_returns(tmp_path):
    model_path = str(build_tiny_model(tmp_path / "model"))
    cfg = GenerationSection(num_actors=2, num_cpus_per_actor=0.5, samples_per_prompt=4, max_new_tokens=48,
                            batch_size=8, chunks_per_actor=4)
    group = GeneratorGroup.create("ft-gen", cfg, ModelSection(), model_path)
    try:
        sampling = group.sampling(seed=11)
        count, expected, seconds = sized_for_a_kill(
            lambda n: group.generate(prompts_table(n), sampling, None), 192)
        prompts = prompts_table(count)
        victim = group.actors[0]
        pid_before = actor_pid(victim)

        after_kill = call_while_killing(lambda: group.generate(prompts, sampling, None), victim, seconds)

        assert actor_pid(victim) != pid_before, "the actor was not restarted"
        assert after_kill.num_rows == prompts.num_rows * 4
        assert sorted(set(after_kill.column("prompt_id").to_pylist())) == sorted(prompts.column("prompt_id").to_pylist())
        assert after_kill.column("response_token_ids").to_pylist() == expected.column("response_token_ids").to_pylist()
    finally:
        group.shutdown()


def test_scorer_killed_mid_call_is_restarted_and_scores_every_row(tmp_path):
    classifier = build_tiny_classifier(tmp_path / "rm")
    cfg = ScoringSection(num_actors=1, num_cpus_per_actor=0.5,
                         rewards=[RewardSpec(kind="hf_classifier", path=str(classifier), batch_size=8)])
    group = ScorerGroup.create("ft-score", cfg, tuple(cfg.rewards))
    try:
        def rollouts_of(count: int) -> pa.Table:
            return prompts_table(count).append_column("response", pa.array([f"{i % 17} good" for i in range(count)]))

        count, expected, seconds = sized_for_a_kill(lambda n: group.score(rollouts_of(n)), 3000)
        rollouts = rollouts_of(count)
        victim = group.actors[0]
        pid_before = actor_pid(victim)
        after_kill = call_while_killing(lambda: group.score(rollouts), victim, seconds)
        assert actor_pid(victim) != pid_before
        assert after_kill.num_rows == count
        assert after_kill.column("reward").to_pylist() == expected.column("reward").to_pylist()
    finally:
        group.shutdown()
