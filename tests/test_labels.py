"""Labels and their cost: reward roles, query selection under a label budget, the built-in proxies, and
the round's cost counters recounted from its Parquet files. Pure: the driver's round runs in-process on
stand-in generators, scorers and learner (no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.contracts import (
    COST_KEYS,
    LABELLED_COLUMN,
    ROLLOUTS_SCHEMA,
    InputError,
    Metric,
)
from actors.rewards.builtin_task import builtin_task_reward
from actors.rewards.proxies import PROXY_NOISE, builtin_task_proxy_reward, ifeval_proxy_reward
from actors.scorer import Scorer
from cluster.config_loading import load_config
from cluster.costs import round_costs, with_cumulative
from cluster.labelling import LabelPlan, label_round
from policies.proxy_quality import agreement
from policies.query import QuerySelector, QuerySettings, make_query, prompt_groups, registered_queries, take_groups
from round_standins import K, LABELLER, PROXY, SEEN, Generators, config_with, grouped, prompts_table, run_one_round

# ------------------------------------------------------------------ the round


def test_the_labeller_never_sees_unselected_responses_and_labels_stay_within_budget(tmp_path):
    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]", "labelling.query=random",
                         "labelling.labels_per_round=18", "selection.policy.top_fraction=1.0")
    runner, metrics, folder = run_one_round(config, tmp_path)
    rollouts = pq.read_table(folder / "rollouts.parquet")
    scored = pq.read_table(folder / "scored.parquet")
    labelled = rollouts.filter(rollouts.column(LABELLED_COLUMN))
    chosen = set(zip(labelled.column("prompt_id").to_pylist(), labelled.column("sample_index").to_pylist()))
    # Training-round labels only (the held-out evaluation scores with the labeller too, on its own prompts).
    training_seen = [item for item in SEEN if not item[0].startswith("h")]
    assert set(training_seen) == chosen and len(training_seen) == len(chosen)
    # 18 responses: 4 whole groups of 4 and 2 responses of a fifth prompt.
    assert len(chosen) == 18 and metrics[Metric.COSTS]["labels"] == 18 <= config.labelling.labels_per_round
    assert sorted(np.unique(labelled.column("prompt_id").to_pylist(), return_counts=True)[1]) == [2, 4, 4, 4, 4]
    # Every response got the proxy, free; scored.parquet holds the labelled rows only.
    assert rollouts.num_rows == 48 and "reward_builtin_task_proxy" in rollouts.column_names
    assert scored.num_rows == 18 and metrics[Metric.COSTS]["proxy_scores"] == 48
    # `reward` is the labeller's alone: the proxy never enters it.
    np.testing.assert_allclose(scored.column("reward").to_numpy(), scored.column("reward_test_counting_labeller").to_numpy())
    assert set(runner.learner.pairs.column("prompt_id").to_pylist()) <= {pid for pid, _ in chosen}


def test_cost_counters_equal_what_the_rounds_parquet_files_hold(tmp_path):
    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]", "labelling.query=random",
                         "labelling.labels_per_round=24", "learner.epochs=3")
    _, metrics, folder = run_one_round(config, tmp_path)
    rollouts = pq.read_table(folder / "rollouts.parquet")
    selected = pq.read_table(folder / "selected.parquet")
    on_disk = json.loads((folder / "metrics.json").read_text())
    costs = on_disk[Metric.COSTS]
    assert set(costs) == set(COST_KEYS) and costs == metrics[Metric.COSTS]
    assert costs["prompts_rolled_out"] == len(set(rollouts.column("prompt_id").to_pylist())) == 12
    assert costs["generated_tokens"] == sum(len(t) for t in rollouts.column("response_token_ids").to_pylist())
    assert costs["labels"] == sum(rollouts.column(LABELLED_COLUMN).to_pylist()) * 1 == 24
    assert costs["proxy_scores"] == rollouts.num_rows * 1
    assert costs["pairs_trained"] == selected.num_rows == on_disk[Metric.PAIRS_TRAINED]
    tokens = sum(len(p) + len(c) + len(r) for p, c, r in zip(*(selected.column(name).to_pylist() for name in
                                                                ("prompt_token_ids", "chosen_token_ids",
                                                                 "rejected_token_ids"))))
    assert costs["learner_tokens"] == 3 * tokens
    assert costs["seconds"] == pytest.approx(sum(on_disk[Metric.PHASE_SECONDS].values()))
    prices = config.reporting.prices  # the defaults: labels, proxy calls and tokens in label units
    assert costs["total_cost"] == pytest.approx(24 * prices.label + 48 * prices.proxy_call
                                                + costs["generated_tokens"] / 1000 * prices.generated_kilotokens
                                                + 3 * tokens / 1000 * prices.learner_kilotokens)
    assert on_disk[Metric.LABELLING]["responses_labelled"] == 24 and on_disk[Metric.LABELLING]["query"] == "random"
    # summary.json: the round's costs and the running totals.
    summary = runner_summary(tmp_path)
    assert summary["rounds"][0][Metric.COSTS] == costs
    assert all(summary["rounds"][0][f"cumulative_{key}"] == costs[key] for key in COST_KEYS)
    from cluster.tools.status import status_lines

    spent = [line for line in status_lines(tmp_path / "run") if "spent so far" in line]
    assert spent == [f"  spent so far: 24 labels, {costs['generated_tokens']} generated tokens, "
                     f"{costs['pairs_trained']} pairs, {costs['learner_tokens']} learner tokens"]


def runner_summary(tmp_path) -> dict:
    from cluster.run_store import RunStore

    return RunStore(tmp_path / "run").write_summary()


def test_proxy_quality_compares_each_proxy_and_the_signal_with_the_labels_of_the_labelled_rows(tmp_path):
    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]", "labelling.query=pvar_proxy",
                         "labelling.query.responses_per_group=2", "labelling.labels_per_round=12",
                         "reporting.prices.proxy_call=0.5", "reporting.prices.generated_kilotokens=0",
                         "reporting.prices.learner_kilotokens=0")
    _, metrics, folder = run_one_round(config, tmp_path)
    scored = pq.read_table(folder / "scored.parquet")
    quality = metrics[Metric.LABELLING]["proxy_quality"]
    expected = agreement(scored.column("prompt_id").to_pylist(),
                         scored.column("reward_builtin_task_proxy").to_numpy(), scored.column("reward").to_numpy())
    assert quality["reward_builtin_task_proxy"] == expected and expected["rows"] == 12
    # pvar_proxy's signal is the proxies' mean: with one proxy, the proxy column itself.
    assert quality["signal"] == expected
    assert metrics[Metric.COSTS]["total_cost"] == pytest.approx(12 + 0.5 * 48)


def test_agreement_counts_within_prompt_pairs_and_signal_ties_as_half():
    ids = ["a", "a", "a", "b", "b"]
    labels = np.array([0.0, 0.5, 1.0, 1.0, 0.0])
    perfect = agreement(ids, labels * 3 + 1, labels)
    assert perfect["pairs"] == 4 and perfect["pair_accuracy"] == 1.0 and perfect["spearman"] == pytest.approx(1.0)
    reversed_b = agreement(ids, np.array([0.0, 0.5, 1.0, 0.0, 1.0]), labels)
    assert reversed_b["pair_accuracy"] == 0.75  # 3 of a's pairs right, b's one wrong
    tied = agreement(ids, np.array([0.0, 0.0, 0.0, np.nan, 1.0]), labels)
    assert tied["rows"] == 4 and tied["pairs"] == 3 and tied["pair_accuracy"] == 0.5 and tied["spearman"] < 0
    assert agreement(ids, np.ones(5), labels)["spearman"] is None  # a constant signal ranks nothing


def test_passive_without_a_budget_writes_todays_tables(tmp_path):
    _, metrics, folder = run_one_round(config_with(f"scoring.rewards=[{LABELLER}]"), tmp_path)
    rollouts = pq.read_table(folder / "rollouts.parquet")
    scored = pq.read_table(folder / "scored.parquet")
    # The generators' table unchanged: no proxy column, no `labelled` column; every response labelled.
    assert rollouts.schema.equals(ROLLOUTS_SCHEMA.insert(3, pa.field("answer", pa.string())))
    assert scored.num_rows == rollouts.num_rows == 48 and len(SEEN) == 48 + 4 * K  # + the held-out
    assert metrics[Metric.COSTS]["labels"] == 48 and metrics[Metric.COSTS]["proxy_scores"] == 0
    assert metrics[Metric.LABELLING]["responses_labelled"] == 48


def test_round_costs_count_every_row_as_labelled_without_the_labelled_column():
    from actors.contracts import PAIRS_SCHEMA

    rollouts = Generators().generate(prompts_table(3), {}, None)
    costs = round_costs(rollouts, PAIRS_SCHEMA.empty_table(), label_rewards=2, proxy_rewards=0, epochs=4,
                        phase_seconds={"generate": 1.5, "train": 2.0})
    assert (costs["labels"], costs["proxy_scores"], costs["pairs_trained"], costs["learner_tokens"]) == (24, 0, 0, 0)
    assert costs["prompts_rolled_out"] == 3 and costs["seconds"] == 3.5


def test_cumulative_costs_sum_the_rounds_and_skip_rounds_without_costs():
    rows = [{Metric.COSTS: dict.fromkeys(COST_KEYS, 2)}, {}, {Metric.COSTS: dict.fromkeys(COST_KEYS, 3)}]
    with_cumulative(rows, Metric.COSTS)
    assert rows[0]["cumulative_labels"] == 2 and "cumulative_labels" not in rows[1]
    assert rows[2]["cumulative_labels"] == 5 and rows[2]["cumulative_learner_tokens"] == 5


# ------------------------------------------------------------------ query selectors


def test_passive_labels_everything_and_takes_no_budget():
    table = grouped(5)
    passive = make_query("passive")
    assert passive.select(table, None, np.random.default_rng(0)).all()
    with pytest.raises(ValueError, match="no label budget"):
        passive.select(table, 9, np.random.default_rng(0))
    assert set(registered_queries()) >= {"passive", "random"}


def test_take_groups_spends_whole_groups_then_a_partial_one_of_at_least_two():
    groups = prompt_groups(grouped(5))
    assert take_groups(groups, range(5), 20, 9).tolist() == [True] * 8 + [False] * 12  # a remainder of 1: none
    assert take_groups(groups, [4, 0, 1], 20, 7).tolist() == [True] * 3 + [False] * 13 + [True] * 4


@pytest.mark.parametrize("budget", [2, 3, 4, 8, 10, 13, 40])
def test_random_picks_floor_budget_over_k_groups_and_a_partial_one_deterministically(budget):
    table = grouped(6)
    random_query = make_query("random")
    mask = random_query.select(table, budget, np.random.default_rng([3, 1, 29]))
    again = random_query.select(table, budget, np.random.default_rng([3, 1, 29]))
    assert mask.tolist() == again.tolist()
    counts = sorted(np.unique(np.asarray(table.column("prompt_id").to_pylist())[mask], return_counts=True)[1],
                    reverse=True)
    whole, rest = divmod(min(budget, 24), K)
    assert counts == [K] * whole + ([rest] if rest >= 2 else [])
    assert mask.sum() <= budget


def test_random_orders_groups_by_the_seed_and_skips_single_responses():
    table = grouped(8)
    picks = {tuple(make_query("random").select(table, 8, np.random.default_rng(seed)).tolist()) for seed in range(6)}
    assert len(picks) > 1
    lone = pa.table({"prompt_id": ["a", "b", "b", "c"], "sample_index": [0, 0, 1, 0]})
    assert take_groups(prompt_groups(lone), [0, 1, 2], 4, None).tolist() == [False, True, True, False]


def test_label_round_rejects_a_selector_that_overspends():
    class Greedy(QuerySelector):
        def select(self, rollouts, max_responses, rng, probe=None):
            return np.ones(rollouts.num_rows, dtype=bool)

    plan = LabelPlan("greedy", 4, 1, 0)
    with pytest.raises(ValueError, match="over the budget of 4"):
        label_round(grouped(3), lambda table, role: table, Greedy(Greedy.Options(kind="greedy"), QuerySettings()), plan,
                    np.random.default_rng(0))


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(("overrides", "message"), [
    (["scoring.rewards=[{kind: programmatic, name: builtin_task, role: proxy}]"], r"scoring.*role 'label'"),
    (["scoring.rewards=[{kind: programmatic, name: builtin_task, role: judge}]"], r"scoring.rewards\[0\].role"),
    (["labelling.labels_per_round=1", "labelling.query=random"], r"labelling.labels_per_round"),
    (["labelling.labels_per_round=8"], r"labelling: .*labels_per_round = 8 .*query 'passive'"),
    (["scoring.rewards=[{kind: programmatic, name: builtin_task}, "
      "{kind: programmatic, name: builtin_task_proxy, role: proxy, weight: 0.5}]"], r"scoring.rewards\[1\].*weight"),
    (["labelling.query=randm"], r"labelling.query.*Did you mean 'random'"),
    (["labelling.query=pvar_proxy"], r"pvar_proxy.*role: proxy"),
    (["data.scheduler=histroy"], r"data.scheduler.*Did you mean 'history'"),
    (["data.scheduler=pools", "data.scheduler.pool_weights=[1.0]"], r"data.scheduler.*one weight per pool"),
    (["labelling.query.heads=1"], r"labelling.query.heads"),
    (["scoring.rewards=[{kind: programmatic, name: builtin_task}, {kind: programmatic, name: builtin_task_exact}]",
      "labelling.labels_per_round=3", "labelling.query=random"], r"labelling.labels_per_round = 3 .*at least 4"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(None, overrides)


def test_a_saved_config_with_proxies_and_a_budget_loads_again(tmp_path):
    from cluster.config_loading import dump_config

    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]", "labelling.query=random",
                         "labelling.labels_per_round=16")
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(config))
    assert load_config(saved, []) == config


def test_roles_reach_the_scorer_settings_and_the_query_settings():
    from cluster.settings import query_settings

    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]")
    assert [r.role for r in config.scoring.rewards] == ["label", "proxy"]
    assert query_settings(config).proxy_columns == ("reward_builtin_task_proxy",)


def test_the_ensemble_options_reach_the_query_settings_seeded_by_the_run():
    from cluster.settings import query_settings

    from policies.query import make_query

    config = config_with("labelling.query=ensemble", "labelling.query.refit_every=3",
                         "labelling.query.hashed_features=512", "run.seed=7")
    selector = make_query(config.labelling.query, query_settings(config))
    assert (selector.ensemble.refit_every, selector.ensemble.hashed_features, selector.model.seed) == (3, 512, 7)


# ------------------------------------------------------------------ the scorer by role, the proxies


def test_the_scorer_scores_one_role_at_a_time():
    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]")
    scorer = Scorer(config.scoring.rewards)
    rollouts = Generators().generate(prompts_table(2), {}, None)
    proxied = scorer.score(rollouts, "proxy")
    assert proxied.column_names == [*rollouts.column_names, "reward_builtin_task_proxy"]
    labelled = scorer.score(rollouts)
    assert labelled.column_names == [*rollouts.column_names, "reward_test_counting_labeller", "reward"]
    assert scorer.columns == ["reward_test_counting_labeller"]


def test_builtin_task_proxy_is_the_reward_plus_bounded_noise_fixed_per_response():
    rollouts = Generators().generate(prompts_table(20), {}, None)
    proxy, exact = builtin_task_proxy_reward(rollouts), builtin_task_reward(rollouts)
    assert np.all(np.abs(proxy - exact) <= PROXY_NOISE) and np.std(proxy - exact) > PROXY_NOISE / 4
    np.testing.assert_array_equal(proxy, builtin_task_proxy_reward(rollouts))
    # A row's score depends on that row alone, not on the batch it came in.
    np.testing.assert_array_equal(proxy[5:9], builtin_task_proxy_reward(rollouts.slice(5, 4)))
    assert np.corrcoef(proxy, exact)[0, 1] > 0.5


def test_noise_sweep_proxies_scale_one_draw_and_the_length_proxy_errs_by_length():
    from actors.rewards.programmatic import get_reward
    from actors.rewards.proxies import LENGTH_BIAS, NOISE_SWEEP, noise_sweep_name

    rollouts = Generators().generate(prompts_table(20), {}, None)
    exact = builtin_task_reward(rollouts)
    base_error = builtin_task_proxy_reward(rollouts) - exact
    for half_width in NOISE_SWEEP:
        error = get_reward(noise_sweep_name(half_width))(rollouts) - exact
        # The same draw per response at every width: only the proxy's quality changes along the sweep.
        np.testing.assert_allclose(error, base_error * half_width / PROXY_NOISE, atol=1e-12)
    assert noise_sweep_name(0.6) == "builtin_task_proxy_noise060"
    batch = pa.table({"prompt_id": ["a", "a", "a"], "answer": ["copy 1 2"] * 3,
                      "response": ["copy 1 2", "copy 1 2 3 4 5 6 7 8 9", "copy"]})
    error = get_reward("builtin_task_length_proxy")(batch) - builtin_task_reward(batch)
    # Its error follows the length alone: the right answer is underrated for being short, a long wrong one is not.
    assert error[1] > 0.25 and error[0] < -0.25 and error[2] < error[0]
    assert np.all(np.abs(error) <= LENGTH_BIAS)


def test_ifeval_proxy_checks_the_first_instruction_only():
    batch = pa.table({
        "instruction_id_list": [["punctuation:no_comma", "change_case:english_lowercase"],
                                ["change_case:english_lowercase", "punctuation:no_comma"], []],
        "kwargs": [["{}", "{}"], ["{}", "{}"], []],
        "response": ["No commas Here", "No, commas here", "anything"],
    })
    values = ifeval_proxy_reward(batch)
    assert values[:2].tolist() == [1.0, 0.0] and np.isnan(values[2])


def test_an_eval_reward_scores_held_out_samples_only_and_costs_no_label(tmp_path):
    exact = "{kind: programmatic, name: builtin_task_exact, role: eval}"
    config = config_with(f"scoring.rewards=[{LABELLER}, {exact}]")
    runner, metrics, folder = run_one_round(config, tmp_path)
    held_out = metrics[Metric.HELDOUT_COLUMNS]
    assert set(held_out) == {"reward_test_counting_labeller", "reward_builtin_task_exact"}
    # The stand-in generator's sample 0 is the exact answer, the others are not: exact match is 1 in 4.
    assert held_out["reward_builtin_task_exact"] == pytest.approx(0.25)
    assert held_out["reward_test_counting_labeller"] == pytest.approx(metrics[Metric.HELDOUT_REWARD_MEAN])
    # Never on the training rollouts, never in `reward`, never a label.
    scored = pq.read_table(folder / "scored.parquet")
    assert "reward_builtin_task_exact" not in scored.column_names
    assert metrics[Metric.COSTS]["labels"] == scored.num_rows
    with pytest.raises(Exception, match="weight"):
        config_with(f"scoring.rewards=[{LABELLER}, {{kind: programmatic, name: builtin_task_exact, role: eval, weight: 2}}]")
