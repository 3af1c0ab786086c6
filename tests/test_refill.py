"""DAPO's dynamic sampling across the pool (`labelling.refill_batches`): a round rolls out more prompts while too few
of its labelled prompts can make a pair. The schedulers' refill draws, the merge of a round's batches, and the
driver's real round on the in-process stand-ins (tests/round_standins.py; no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.contracts import Metric
from actors.rewards.builtin_task import builtin_task_reward
from actors.rewards.programmatic import register_reward
from cluster.labelling import LabelPlan
import policies.query.base as query_registry
from policies.query import QuerySelector, register_query
from policies.query.groups import informative_prompts
from policies.schedulers import make_scheduler
from policies.schedulers.base import Schedule, SchedulerContext, merge_schedules
from round_standins import K, SEEN, config_with, prompts_table, run_one_round, runner_for

POOL = 48


@register_reward("test_tying_labeller")
def tying_labeller(batch: pa.Table) -> np.ndarray:
    """The built-in task's reward, except that every response of an even-numbered prompt scores 0.5: half the
    prompts tie. Records what it is asked to score, as the counting labeller does."""
    ids = batch.column("prompt_id").to_pylist()
    SEEN.extend(zip(ids, batch.column("sample_index").to_pylist()))
    rewards = np.asarray(builtin_task_reward(batch), dtype=np.float64)
    ties = np.asarray([int(pid[1:]) % 2 == 0 for pid in ids])
    return np.where(ties, 0.5, rewards)


TYING = "scoring.rewards=[{kind: programmatic, name: test_tying_labeller}]"


class FirstBatchOnly(QuerySelector):
    """Labels every response of a round's first batch and none of a refill batch's."""

    def __init__(self, options, settings):
        super().__init__(options, settings)
        self.calls = 0

    def select(self, rollouts, max_responses, rng, probe=None):
        self.calls += 1
        return np.full(rollouts.num_rows, self.calls == 1)


@pytest.fixture(scope="module", autouse=True)
def first_batch_only():
    """FirstBatchOnly registered for this module only: other modules list the registered selectors (the config
    reference among them) and must not find it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(query_registry._QUERIES, "_items", dict(query_registry._QUERIES._items))
        register_query("test_first_batch_only")(FirstBatchOnly)
        yield


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("name", ["uniform", "epochs", "history", "pools"])
def test_a_refill_draw_never_repeats_the_rounds_prompts(name):
    scheduler = make_scheduler(name, SchedulerContext(seed=3))
    pool = prompts_table(40)
    first = scheduler.schedule(pool, 16, 0)
    second = scheduler.schedule(pool, 16, 0, exclude=first.rows)
    assert second.rows.size == 16 and not set(second.rows) & set(first.rows)
    # Only 8 prompts are left after two batches: a third batch takes them all, and a fourth gets none.
    taken = np.concatenate([first.rows, second.rows])
    third = scheduler.schedule(pool, 16, 0, exclude=taken)
    assert sorted(third.rows) == sorted(set(range(40)) - set(taken))
    assert scheduler.schedule(pool, 16, 0, exclude=np.arange(40)).rows.size == 0


def test_the_first_batch_of_a_round_draws_as_before():
    # The uniform draw with no exclusion is the pinned draw every run has made (tests/test_overlap.py's digests).
    pool = prompts_table(40)
    plain = make_scheduler("uniform", SchedulerContext(seed=1)).schedule(pool, 12, 5)
    empty = make_scheduler("uniform", SchedulerContext(seed=1)).schedule(pool, 12, 5, exclude=np.zeros(0, np.int64))
    np.testing.assert_array_equal(plain.rows, empty.rows)


def test_merged_schedules_sum_the_counts_and_keep_the_last_state():
    first = Schedule(np.array([1, 5]), skipped=np.array([2, 3]), audited=np.array([5]),
                     details={"examined": 4, "skipped": 2, "p": 0.5, "position": 4, "pool_0": 1})
    later = Schedule(np.array([3, 7]), skipped=np.array([9]), audited=np.zeros(0, np.int64),
                     details={"examined": 3, "skipped": 1, "p": 0.5, "position": 7, "pool_0": 2})
    merged = merge_schedules(first, later)
    np.testing.assert_array_equal(merged.rows, [1, 3, 5, 7])
    np.testing.assert_array_equal(merged.skipped, [2, 9])  # 3 was skipped, then rolled out by the refill
    np.testing.assert_array_equal(merged.audited, [5])
    assert merged.details == {"examined": 7, "skipped": 3, "p": 0.5, "position": 7, "pool_0": 3, "batches": 2}


def test_informative_prompts_count_the_groups_that_do_not_tie():
    scored = pa.table({"prompt_id": ["a", "a", "b", "b", "c", "c", "d"],
                       "reward": [0.0, 1.0, 0.5, 0.5, 0.2, float("nan"), 0.9]})
    assert informative_prompts(scored, 0.0) == 1           # b ties, c has one finite reward, d has one response
    assert informative_prompts(scored, 1.0) == 0
    assert informative_prompts(scored.slice(0, 0), 0.0) == 0


def test_a_refill_batch_gets_what_is_left_of_the_label_budget():
    plan = LabelPlan("random", labels_per_round=20, label_rewards=2)
    assert plan.max_responses == 10
    assert plan.after(4).labels_per_round == 12 and plan.after(4).can_pair
    assert plan.after(9).max_responses == 1 and not plan.after(9).can_pair
    assert LabelPlan().after(100) == LabelPlan() and LabelPlan().can_pair


# ------------------------------------------------------------------ the round


def refill_round(tmp_path, *overrides):
    runner = runner_for(config_with(TYING, "selection.pair_budget=12", *overrides), tmp_path,
                        prompts=prompts_table(POOL))
    SEEN.clear()
    metrics = runner.run_round(0)
    return runner, metrics, tmp_path / "run" / "round_0000"


def test_without_refill_a_round_rolls_out_one_batch(tmp_path):
    _, metrics, folder = refill_round(tmp_path)
    assert metrics[Metric.COSTS]["prompts_rolled_out"] == 12 and "batches" not in metrics[Metric.SCHEDULING]


def test_a_round_rolls_out_more_prompts_until_enough_of_them_do_not_tie(tmp_path):
    runner, metrics, folder = refill_round(tmp_path, "labelling.refill_batches=5")
    rollouts = pq.read_table(folder / "rollouts.parquet")
    scored = pq.read_table(folder / "scored.parquet")
    ids = rollouts.column("prompt_id").to_pylist()
    batches = metrics[Metric.SCHEDULING]["batches"]
    # About half of each batch of 12 ties: the first batch cannot reach 12 prompts that make a pair.
    assert 2 <= batches <= 6 and len(set(ids)) == 12 * batches
    keys = list(zip(ids, rollouts.column("sample_index").to_pylist()))
    assert len(set(keys)) == len(keys) == 12 * batches * K  # no prompt rolled out twice
    training_seen = [item for item in SEEN if not item[0].startswith("h")]
    assert sorted(training_seen) == sorted(keys)  # every response labelled once (passive)
    informative = informative_prompts(scored, 0.0)
    assert informative == metrics[Metric.SCHEDULING]["informative_prompts"] >= 12
    # It stopped at the first batch that reached the target: without the last batch's 12 prompts it was short.
    last_batch = list(dict.fromkeys(ids))[-12:]
    earlier = scored.filter(pa.array([pid not in last_batch for pid in scored.column("prompt_id").to_pylist()]))
    assert informative_prompts(earlier, 0.0) < 12
    assert metrics[Metric.COSTS]["prompts_rolled_out"] == metrics[Metric.PROMPTS] == 12 * batches
    assert metrics[Metric.COSTS]["labels"] == rollouts.num_rows == metrics[Metric.LABELLING]["responses_labelled"]
    assert runner.learner.pairs.num_rows == 12


def test_a_refill_stops_when_the_label_budget_is_spent(tmp_path):
    _, metrics, folder = refill_round(tmp_path, "labelling.refill_batches=5", "labelling.query=random",
                                      "labelling.labels_per_round=64", "selection.policy.top_fraction=1.0")
    rollouts = pq.read_table(folder / "rollouts.parquet")
    training_seen = [item for item in SEEN if not item[0].startswith("h")]
    # 12 groups of 4 in the first batch (48 labels), 4 groups in the second: then the budget is spent.
    assert len(training_seen) == 64 == metrics[Metric.COSTS]["labels"] == metrics[Metric.LABELLING]["responses_labelled"]
    assert metrics[Metric.SCHEDULING]["batches"] == 2 and rollouts.num_rows == 24 * K
    assert metrics[Metric.LABELLING]["labels_per_round"] == 64


def test_dynamic_filter_asks_a_refill_batch_for_the_missing_groups_only(tmp_path):
    _, metrics, _ = refill_round(tmp_path, "labelling.refill_batches=5", "labelling.query=dynamic_filter",
                                 "selection.policy.top_fraction=1.0")
    per_batch = metrics[Metric.LABELLING]["batch_selectors"]
    assert len(per_batch) == metrics[Metric.SCHEDULING]["batches"] >= 2
    kept = [summary["groups_kept"] for summary in per_batch]
    # Each batch keeps what it can of the groups still missing; together they reach the target and stop there.
    assert sum(kept) == metrics[Metric.SCHEDULING]["informative_prompts"] == 12
    labelled_groups = [s["groups_kept"] + s["groups_tied"] for s in per_batch]
    assert metrics[Metric.LABELLING]["responses_labelled"] == K * sum(labelled_groups)


def test_a_refill_batch_that_labels_nothing_is_rolled_out_and_counted(tmp_path):
    _, metrics, folder = refill_round(tmp_path, "labelling.refill_batches=1", "labelling.query=test_first_batch_only")
    rollouts = pq.read_table(folder / "rollouts.parquet")
    scored = pq.read_table(folder / "scored.parquet")
    assert metrics[Metric.SCHEDULING]["batches"] == 2 and rollouts.num_rows == 24 * K
    assert scored.num_rows == 12 * K == metrics[Metric.COSTS]["labels"]  # only the first batch's
    assert "reward_test_tying_labeller" in scored.column_names
