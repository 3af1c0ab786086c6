"""Prompt schedulers (policies/schedulers/): pure unit tests on hand-made pools with known outcomes, the
config's `data.scheduler: {kind, <its options>}` choice, and the driver resuming one."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from actors.contracts import PROMPT_HISTORY_SCHEMA, InputError, Metric
from actors.options import KindOptions
from cluster.config_loading import load_config
from policies.schedulers import SchedulerContext, make_scheduler, registered_schedulers, scheduler_options
from policies.schedulers.history import HistoryOptions, adapted_p, skip_probability
from policies.schedulers.pools import pool_of, pool_weights
from policies.schedulers.uniform import uniform_draw


def pool(size: int) -> pa.Table:
    return pa.table({"prompt_id": [f"p{i}" for i in range(size)]})


def scored_for(prompt_ids, outcome) -> pa.Table:
    """Four labelled responses per prompt: all 1.0 when `outcome(pid)` says tied, else 0, 1, 0, 1."""
    ids, rewards = [], []
    for pid in prompt_ids:
        ids += [pid] * 4
        rewards += [1.0] * 4 if outcome(pid) else [0.0, 1.0, 0.0, 1.0]
    return pa.table({"prompt_id": ids, "reward": rewards})


def run_rounds(scheduler, table: pa.Table, rounds: int, tied, start: int = 0, count: int = 8):
    schedules = []
    for index in range(start, start + rounds):
        schedule = scheduler.schedule(table, count, index)
        ids = [table.column("prompt_id")[int(r)].as_py() for r in schedule.rows]
        scheduler.record(index, scored_for(ids, tied), schedule, table)
        schedules.append(schedule)
    return schedules


def test_registered_and_uniform_is_todays_draw():
    assert set(registered_schedulers()) == {"uniform", "epochs", "history", "pools"}
    rng = np.random.default_rng([3, 2])
    assert uniform_draw(40, 8, 3, 2).tolist() == np.sort(rng.choice(40, size=8, replace=False)).tolist()
    assert make_scheduler("uniform", SchedulerContext(seed=3)).schedule(pool(40), 8, 2).rows.tolist() == \
        uniform_draw(40, 8, 3, 2).tolist()


def test_skip_probability_is_greso_rule_with_its_floor():
    assert skip_probability(np.array([0, 1, 2, 50]), 0.5, 0.01).tolist() == pytest.approx([0, 0.5, 0.75, 0.99])
    options = HistoryOptions(kind="history", p_step=0.01, p_min=0.05, p_max=0.95, target_tied_share=0.25)
    assert adapted_p(0.5, 0.4, options) == pytest.approx(0.49)      # too many ties: skip more
    assert adapted_p(0.5, 0.1, options) == pytest.approx(0.51)
    assert adapted_p(0.05, 0.9, options) == pytest.approx(0.05) and adapted_p(0.5, None, options) == 0.5


def test_history_skips_prompts_that_keep_tying_and_audits_some():
    table = pool(40)
    always_tied = {f"p{i}" for i in range(20)}
    scheduler = make_scheduler("history", SchedulerContext(seed=1), audit_fraction=0.25)
    schedules = run_rounds(scheduler, table, 30, lambda pid: pid in always_tied)
    late = schedules[-10:]
    rolled = [table.column("prompt_id")[int(r)].as_py() for s in late for r in s.rows if r not in s.audited]
    # Half the pool always ties; once their streaks build up they are mostly skipped.
    assert np.mean([pid in always_tied for pid in rolled]) < 0.25
    assert sum(s.details["skipped"] for s in late) > 0
    # Audited prompts are skipped ones rolled out anyway, and every audited prompt here ties.
    for s in late:
        assert set(s.audited.tolist()) <= set(s.skipped.tolist()) and set(s.audited.tolist()) <= set(s.rows.tolist())
    audits = [s for s in late if s.details["audited"]]
    assert audits and all(s.details["audit_informative"] == 0 for s in audits)


def test_history_never_starves_a_prompt():
    # Every prompt always ties, the worst case: the exploration floor and the epoch walk still offer and take
    # every prompt again and again.
    table = pool(30)
    scheduler = make_scheduler("history", SchedulerContext(seed=5), floor=0.05, p_min=0.05)
    schedules = run_rounds(scheduler, table, 200, lambda pid: True, count=6)
    rolled = np.zeros(30, dtype=int)
    for s in schedules:
        rolled[s.rows] += 1
    assert rolled.min() >= 3, rolled
    # And nothing is rolled out twice in one round.
    assert all(len(set(s.rows.tolist())) == s.rows.size for s in schedules)


def test_epochs_rolls_out_every_prompt_once_per_epoch():
    table = pool(20)
    scheduler = make_scheduler("epochs", SchedulerContext(seed=4))
    schedules = run_rounds(scheduler, table, 5, lambda pid: False, count=8)
    # 5 rounds x 8 = two epochs of 20: every prompt exactly twice, where a uniform draw repeats some and misses others.
    assert np.bincount(np.concatenate([s.rows for s in schedules]), minlength=20).tolist() == [2] * 20
    assert scheduler.state()[1] == {"epoch": 1, "position": 20}


@pytest.mark.parametrize(("name", "options"), [("uniform", {}), ("epochs", {}), ("history", {"audit_fraction": 0.2}),
                                               ("pools", {})])
def test_state_after_restore_is_identical_to_an_uninterrupted_run(name, options):
    table = pool(25)
    context = SchedulerContext(seed=2)
    tied = lambda pid: int(pid[1:]) % 3 == 0  # noqa: E731
    straight = make_scheduler(name, context, **options)
    whole = run_rounds(straight, table, 10, tied)
    first = make_scheduler(name, context, **options)
    run_rounds(first, table, 6, tied)
    history, scalars = first.state()
    assert history.schema == PROMPT_HISTORY_SCHEMA
    resumed = make_scheduler(name, context, **options)
    resumed.restore(history, scalars)
    rest = run_rounds(resumed, table, 4, tied, start=6)
    assert [s.rows.tolist() for s in rest] == [s.rows.tolist() for s in whole[6:]]
    assert resumed.state()[0].equals(straight.state()[0]) and resumed.state()[1] == straight.state()[1]


def test_pools_weigh_prompts_by_their_last_mean_reward():
    pools = pool_of(np.array([0.1, 0.5, 0.9, np.nan, 1.5]), np.array([1, 1, 1, 0, 1]), (0.25, 0.75, 1.0))
    assert pools.tolist() == [0, 1, 2, -1, -1]
    assert pool_weights(pools, (0.2, 1.0, 0.2)).tolist() == [0.2, 1.0, 0.2, 1.0, 1.0]
    # Prompts the policy half-solves are drawn about five times as often as ones it always solves.
    table = pool(40)
    scheduler = make_scheduler("pools", SchedulerContext(seed=0))
    half = {f"p{i}" for i in range(20)}
    run_rounds(scheduler, table, 1, lambda pid: pid not in half, count=40)
    counts = np.zeros(40)
    for index in range(1, 200):
        counts[scheduler.schedule(table, 4, index).rows] += 1
    assert counts[:20].mean() > 3 * counts[20:].mean()


def test_a_resumed_driver_commits_byte_identical_scheduler_state(tmp_path):
    """The driver's real round (stand-in actors, tests/round_standins.py): three rounds straight, against
    two rounds, a new driver (as after a crash) and the third."""
    from round_standins import LABELLER, config_with, runner_for

    config = config_with(f"scoring.rewards=[{LABELLER}]", "data.scheduler.kind=history",
                         "data.scheduler.audit_fraction=0.5", "labelling.tie_tolerance=1.0",
                         "data.scheduler.p_start=0.1", "data.scheduler.p_min=0.05",
                         "data.scheduler.neighbours=2", "data.scheduler.neighbour_source=ngrams")
    straight = runner_for(config, tmp_path / "a")
    for index in range(3):
        straight.run_round(index)
    interrupted = runner_for(config, tmp_path / "b")
    for index in range(2):
        interrupted.run_round(index)
    resumed = runner_for(config, tmp_path / "b")
    metrics = resumed.run_round(2)
    for name in ("prompt_history.parquet", "scheduler.json", "rollouts.parquet"):
        a = (tmp_path / "a" / "run" / "round_0002" / name).read_bytes()
        assert a == (tmp_path / "b" / "run" / "round_0002" / name).read_bytes(), name
    # Every visit ties (tolerance 1 on a reward in [0, 1]), so by round 2 the rule skips, and audits some.
    assert metrics[Metric.SCHEDULING]["skipped"] > 0 and metrics[Metric.SCHEDULING]["audited"] > 0


def test_each_scheduler_declares_only_the_options_it_reads():
    assert scheduler_options("uniform") is KindOptions and scheduler_options("epochs") is KindOptions
    assert {"p_start", "audit_fraction", "neighbours"} <= set(scheduler_options("history").model_fields)
    assert set(scheduler_options("pools").model_fields) == {"kind", "pool_bounds", "pool_weights"}
    with pytest.raises(ValueError, match="unknown prompt scheduler 'histroy'. Did you mean 'history'"):
        scheduler_options("histroy")
    with pytest.raises(ValidationError, match="audit_fraction"):
        make_scheduler("uniform", audit_fraction=0.5)   # uniform skips nothing, so it audits nothing


@pytest.mark.parametrize(("name", "options", "message"), [
    ("history", {"p_start": 0.02}, r"p_start 0.02 is outside \[p_min, p_max\] = \[0.05, 0.95\]"),
    ("history", {"p_min": 0.6, "p_max": 0.4, "p_start": 0.5}, "p_min 0.6 is above p_max 0.4"),
    ("pools", {"pool_weights": [1.0]}, "pool_bounds has 3 entries and pool_weights 1: give one weight per pool"),
    ("pools", {"pool_bounds": [0.75, 0.25, 1.0]}, r"pool_bounds must be ascending, got \[0.75, 0.25, 1.0\]"),
    ("pools", {"pool_weights": [0.2, -1.0, 0.2]}, "pool_weights must be >= 0"),
])
def test_options_that_contradict_each_other_are_refused_with_what_to_fix(name, options, message):
    with pytest.raises(ValidationError, match=message):
        make_scheduler(name, **options)


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.scheduler.kind=uniform", "data.scheduler.p_start=0.3"], r"data\.scheduler\.p_start"),
    (["data.scheduler.p_start=0.3"], r"data\.scheduler\.p_start"),     # no kind given: the default, uniform
    (["data.scheduler={kind: epochs, pool_bounds: [1.0]}"], r"data\.scheduler\.pool_bounds"),
    (["data.scheduler.kind=pools", "data.scheduler.audit_fraction=0.1"], r"data\.scheduler\.audit_fraction"),
    (["data.scheduler.kind=pools", "data.scheduler.pool_weights=[1.0]"], r"data\.scheduler: .*one weight per pool"),
    (["data.scheduler.kind=history", "data.scheduler.p_start=1.5"], r"data\.scheduler\.p_start"),
])
def test_an_option_the_chosen_scheduler_does_not_read_is_refused_with_its_key(overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(None, overrides)


def test_the_config_builds_the_chosen_scheduler_with_its_options_and_the_run_context(tmp_path):
    from cluster.run_setup import build_scheduler
    from cluster.run_store import RunStore
    from cluster.settings import scheduler_context

    config = load_config(None, ["data.scheduler={kind: history, p_start: 0.4, audit_fraction: 0.1, neighbours: 2}",
                                "labelling.tie_tolerance=0.25", "run.seed=7"])
    context = scheduler_context(config)
    assert (context.seed, context.tie_tolerance) == (7, 0.25)   # the one tie tolerance, not an option of its own
    scheduler = build_scheduler(config, RunStore(tmp_path))
    assert scheduler.name == "history" and scheduler.options == config.data.scheduler and scheduler.p == 0.4
    assert scheduler.context.tie_tolerance == 0.25
    assert load_config(None, ["data.scheduler=pools"]).data.scheduler.pool_weights == [0.2, 1.0, 0.2]
