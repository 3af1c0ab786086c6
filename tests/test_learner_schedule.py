"""The learner's learning-rate schedule, its resume, and activation checkpointing (actors/kernels/training_controls.py).

Fast and in one process: the schedule's multipliers against transformers' own, the step counter running
over rounds and resuming from the state a round saves, then the real `RoundTrainer` on the tiny model
(tests/tiny_model.py) showing the optimizer's rate follows the schedule and that checkpointing changes
memory, not the update. The config's checks of the new `learner` keys are at the end.
"""

from __future__ import annotations

import json

import pytest
import torch

from actors.contracts import InputError
from actors.kernels.dpo_trainer import PairTokens, RoundTrainer
from actors.kernels.training_controls import (
    LEARNER_STATE_FILE,
    enable_gradient_checkpointing,
    lr_multiplier,
    make_scheduler,
    original_use_cache,
    read_start_step,
    write_learner_state,
)
from actors.settings import LearnerSection
from cluster.config_loading import load_config
from tiny_model import PAD_ID, build_tiny_model, random_pairs_table

BASE_LR = 1e-3


def optimizer_rates(settings: LearnerSection, steps: int, start_step: int = 0, base: float = BASE_LR) -> list[float]:
    """The rate an optimizer uses at each of `steps` optimizer steps, under make_scheduler."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=base)
    scheduler = make_scheduler(optimizer, settings, start_step)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


# ---- the schedule function --------------------------------------------------------------------------


def test_constant_without_warmup_is_todays_rate_bit_for_bit():
    rates = optimizer_rates(LearnerSection(), 50)
    assert all(rate == BASE_LR for rate in rates)  # exact: AdamW sees the very float it saw before schedules
    assert all(lr_multiplier(step, "constant", 0, None) == 1.0 for step in range(1000))


def test_warmup_then_decay_at_given_steps():
    linear = LearnerSection(lr_schedule="linear", warmup_steps=4, schedule_steps=12)
    cosine = LearnerSection(lr_schedule="cosine", warmup_steps=4, schedule_steps=12)
    constant = LearnerSection(warmup_steps=4)
    expected = {
        # step: (linear, cosine, constant), as fractions of the base rate
        0: (0.0, 0.0, 0.0), 1: (0.25, 0.25, 0.25), 2: (0.5, 0.5, 0.5), 4: (1.0, 1.0, 1.0),
        8: (0.5, 0.5, 1.0), 10: (0.25, 0.5 * (1 + 2 ** -0.5 * -1), 1.0), 12: (0.0, 0.0, 1.0),
        20: (0.0, 0.0, 1.0),  # past schedule_steps: held at 0 (transformers' cosine would be back at 1 here)
    }  # fmt: skip
    rates = {name: optimizer_rates(settings, 21) for name, settings in
             (("linear", linear), ("cosine", cosine), ("constant", constant))}  # fmt: skip
    for step, (lin, cos, const) in expected.items():
        assert rates["linear"][step] == pytest.approx(lin * BASE_LR, abs=1e-15), step
        assert rates["cosine"][step] == pytest.approx(cos * BASE_LR, abs=1e-15), step
        assert rates["constant"][step] == pytest.approx(const * BASE_LR, abs=1e-15), step


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_the_multipliers_are_transformers_own_up_to_the_horizon(schedule):
    from transformers import get_scheduler

    warmup, horizon = 3, 17
    parameter = torch.nn.Parameter(torch.zeros(1))
    name = "constant_with_warmup" if schedule == "constant" else schedule
    theirs = get_scheduler(name, torch.optim.SGD([parameter], lr=1.0), num_warmup_steps=warmup,
                           num_training_steps=horizon).lr_lambdas[0]  # fmt: skip
    steps = None if schedule == "constant" else horizon
    for step in range(horizon + 1):
        assert lr_multiplier(step, schedule, warmup, steps) == pytest.approx(theirs(step), abs=1e-12), step


def test_a_run_of_rounds_follows_one_long_schedule_and_a_resume_continues_it(tmp_path):
    settings = LearnerSection(lr_schedule="cosine", warmup_steps=5, schedule_steps=40)
    one_run = optimizer_rates(settings, 45)
    # A resume at step k: a fresh optimizer and scheduler given k give the uninterrupted run's rates from k on.
    for k in (1, 5, 17, 40, 42):
        assert optimizer_rates(settings, 45 - k, start_step=k) == pytest.approx(one_run[k:], abs=1e-15), k
    # ... and k travels through the checkpoint's learner_state.json.
    assert read_start_step(str(tmp_path)) == 0  # a model no round wrote: the run's first step
    write_learner_state(str(tmp_path), 17, round_index=3)
    assert json.loads((tmp_path / LEARNER_STATE_FILE).read_text()) == {"global_step": 17, "round_index": 3}
    assert read_start_step(str(tmp_path)) == 17
    (tmp_path / LEARNER_STATE_FILE).write_text('{"global_step": -1}')
    with pytest.raises(ValueError, match="global_step must be an integer >= 0"):
        read_start_step(str(tmp_path))


# ---- the real trainer on the tiny model ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("model") / "tiny"))


def trainer(model_path: str, settings: LearnerSection, start_step: int = 0) -> RoundTrainer:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    return RoundTrainer(model, optimizer, settings, PAD_ID, start_step=start_step)


def test_the_trainers_rate_follows_the_schedule_across_rounds_and_after_a_resume(tiny_model, tmp_path):
    settings = LearnerSection(num_workers=1, batch_size=2, measure_round_end=False, learning_rate=BASE_LR,
                              lr_schedule="linear", warmup_steps=2, schedule_steps=8)  # fmt: skip
    pairs = PairTokens.from_table(random_pairs_table(6, seed=1))  # 3 steps per round
    run = trainer(tiny_model, settings)
    rounds = [run.train_round(index, pairs) for index in range(4)]
    expected = optimizer_rates(settings, 12)
    for index, metrics in enumerate(rounds):
        assert metrics["steps"] == 3 and metrics["global_step"] == 3 * (index + 1)  # never reset at a round
        assert metrics["lr_first"] == pytest.approx(expected[3 * index], abs=1e-15)
        assert metrics["lr_last"] == pytest.approx(expected[3 * index + 2], abs=1e-15)
    assert rounds[0]["lr_first"] == 0.0 and rounds[3]["lr_last"] == 0.0  # warmup starts at 0; decayed to 0
    # A learner resumed from round 1's saved step takes round 2 at the uninterrupted run's rates.
    write_learner_state(str(tmp_path), rounds[1]["global_step"], round_index=1)
    resumed = trainer(tiny_model, settings, start_step=read_start_step(str(tmp_path))).train_round(2, pairs)
    assert (resumed["lr_first"], resumed["lr_last"], resumed["global_step"]) == \
        (rounds[2]["lr_first"], rounds[2]["lr_last"], rounds[2]["global_step"])


def test_an_empty_round_takes_no_step_and_reports_no_rate(tiny_model):
    run = trainer(tiny_model, LearnerSection(num_workers=1, batch_size=2, measure_round_end=False))
    metrics = run.train_round(0, PairTokens([], [], []))
    assert metrics["steps"] == 0 and metrics["global_step"] == 0
    assert metrics["lr_first"] is None and metrics["lr_last"] is None


def test_gradient_checkpointing_changes_memory_not_the_update(tiny_model, tmp_path):
    settings = LearnerSection(num_workers=1, batch_size=4, epochs=2, measure_round_end=False)
    pairs = PairTokens.from_table(random_pairs_table(8, seed=2))
    plain, checkpointed = trainer(tiny_model, settings), trainer(tiny_model, settings)
    use_cache = enable_gradient_checkpointing(checkpointed.model)
    assert use_cache is True and checkpointed.model.config.use_cache is False
    assert checkpointed.model.model.layers[0].gradient_checkpointing
    a, b = plain.train_round(0, pairs), checkpointed.train_round(0, pairs)
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    for p, q in zip(plain.model.parameters(), checkpointed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    # The checkpoint keeps the model's own use_cache; training goes on without the cache.
    with original_use_cache(checkpointed.model, use_cache):
        checkpointed.model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["use_cache"] is True
    assert checkpointed.model.config.use_cache is False


# ---- the config's checks --------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    (["learner.warmup_steps=-1"], r"learner\.warmup_steps"),
    (["learner.lr_schedule=linear"], r"learner\.schedule_steps is required"),
    (["learner.lr_schedule=cosine", "learner.warmup_steps=10", "learner.schedule_steps=5"],
     r"learner\.schedule_steps \(5\) must be greater than learner\.warmup_steps \(10\)"),
    (["learner.schedule_steps=100"], r"learner\.schedule_steps \(100\) is only read by"),
    (["learner.schedule_steps=0", "learner.lr_schedule=linear"], r"learner\.schedule_steps"),
    (["learner.lr_schedule=step"], r"learner\.lr_schedule"),
    (["learner.max_prompt_tokens=0"], r"learner\.max_prompt_tokens"),
    (["learner.max_response_tokens=0"], r"learner\.max_response_tokens"),
    (["learner.max_length=1"], r"learner\.max_length"),
])  # fmt: skip
def test_bad_values_are_refused_naming_the_key(overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(None, overrides)


def test_good_values_validate():
    config = load_config(None, ["learner.lr_schedule=cosine", "learner.warmup_steps=10", "learner.schedule_steps=200",
                                "learner.gradient_checkpointing=true", "learner.max_prompt_tokens=512",
                                "learner.max_response_tokens=256", "learner.max_length=768"])  # fmt: skip
    learner = config.learner
    assert (learner.lr_schedule, learner.warmup_steps, learner.schedule_steps) == ("cosine", 10, 200)
    assert learner.gradient_checkpointing and learner.max_length == 768
