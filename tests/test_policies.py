"""Selection policies: PVar maths, pair builders, the pvar and random policies, the registry."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_tables import brute_force_pvar, make_scored, selected_ids

import policies
from policies import Selection, make_policy, register_policy, registered_policies
from actors.contracts import PAIRS_SCHEMA, PROMPT_STATS_SCHEMA
from policies.base import SelectionPolicy
from policies.grouping import group_rewards
from policies.pair_builders import PairBuilderOptions, get_pair_builder
from policies.pvar import (
    grouped_preference_variance,
    preference_variance,
    preference_variance_by_prompt,
)

CONTRACT_PAIR_COLUMNS = {
    "prompt_id": pa.string(),
    "prompt_token_ids": pa.list_(pa.int32()),
    "chosen_token_ids": pa.list_(pa.int32()),
    "rejected_token_ids": pa.list_(pa.int32()),
    "chosen_response": pa.string(),
    "rejected_response": pa.string(),
    "chosen_reward": pa.float64(),
    "rejected_reward": pa.float64(),
    "pvar": pa.float64(),
}

finite_rewards = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------- PVar statistic


@settings(max_examples=80, deadline=None)
@given(st.lists(finite_rewards, min_size=2, max_size=8), st.floats(0.1, 10))
def test_pvar_equals_variance_over_all_ordered_pairs(rewards, tau):
    assert preference_variance(np.array(rewards), tau) == pytest.approx(brute_force_pvar(rewards, tau), rel=1e-9, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite_rewards, min_size=1, max_size=8), finite_rewards)
def test_pvar_is_invariant_to_shifting_every_reward(rewards, shift):
    assert preference_variance(np.array(rewards) + shift) == pytest.approx(preference_variance(np.array(rewards)), abs=1e-9)


def test_pvar_is_zero_without_disagreement():
    assert preference_variance(np.array([0.7, 0.7, 0.7, 0.7])) == 0.0
    assert preference_variance(np.array([3.0])) == 0.0
    assert preference_variance(np.array([])) == 0.0


def test_pvar_grows_with_the_spread_and_shrinks_with_tau():
    narrow, wide = preference_variance(np.array([0.0, 0.5, 1.0])), preference_variance(np.array([0.0, 1.0, 2.0]))
    assert 0 < narrow < wide < 0.25
    assert preference_variance(np.array([0.0, 1.0]), tau=2.0) < preference_variance(np.array([0.0, 1.0]), tau=1.0)
    # Two responses far apart: p_ij -> 1 or 0, so every term -> 1/4.
    assert preference_variance(np.array([0.0, 1e6])) == pytest.approx(0.25)


def test_pvar_rejects_nan_and_bad_tau():
    with pytest.raises(ValueError, match="non-finite"):
        preference_variance(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="tau"):
        preference_variance(np.array([1.0, 2.0]), tau=0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(finite_rewards, min_size=0, max_size=6), min_size=1, max_size=6), st.floats(0.2, 5), st.randoms())
def test_grouped_pvar_equals_per_prompt_pvar(groups, tau, shuffler):
    rows = [(g, r) for g, rewards in enumerate(groups) for r in rewards]
    shuffler.shuffle(rows)
    codes = np.array([g for g, _ in rows], dtype=np.int64)
    rewards = np.array([r for _, r in rows], dtype=np.float64)
    grouped = grouped_preference_variance(codes, rewards, tau, n_groups=len(groups))
    expected = [preference_variance(np.array(g), tau) for g in groups]
    np.testing.assert_allclose(grouped, expected, rtol=1e-12, atol=1e-15)


def test_pvar_by_prompt_reads_a_scored_table_in_first_appearance_order():
    table = preference_variance_by_prompt(make_scored({"b": [0.0, 2.0, 1.0], "a": [5.0], "c": [1.0, 1.0]}))
    assert table.column("prompt_id").to_pylist() == ["b", "a", "c"]
    assert table.column("n_responses").to_pylist() == [3, 1, 2]
    pvar = table.column("pvar").to_pylist()
    assert pvar[0] == pytest.approx(brute_force_pvar([0.0, 2.0, 1.0], 1.0)) and pvar[1:] == [0.0, 0.0]


def test_nan_reward_error_names_the_prompt():
    scored = make_scored({"fine": [0.0, 1.0], "prompt-with-nan": [0.5, float("nan")]})
    with pytest.raises(ValueError, match="prompt-with-nan"):
        preference_variance_by_prompt(scored)
    with pytest.raises(ValueError, match="prompt-with-nan"):
        make_policy("pvar").select(scored, 4, np.random.default_rng(0))


# ---------------------------------------------------------------- pair builders


def build(name: str, rewards_by_prompt: dict[str, list[float]], min_gap: float = 0.0, seed: int = 0):
    scored = make_scored(rewards_by_prompt)
    grouped = group_rewards(scored)
    pairs = get_pair_builder(name)(grouped, PairBuilderOptions(min_reward_gap=min_gap), np.random.default_rng(seed))
    ids = grouped.prompt_ids
    as_tuples = [
        (ids[c], int(grouped.sample_index[w]), int(grouped.sample_index[l]))
        for c, w, l in zip(pairs.prompt_codes, pairs.chosen_rows, pairs.rejected_rows)
    ]
    return as_tuples


def test_max_min_pairs_best_with_worst_and_breaks_ties_by_sample_index():
    pairs = build("max_min", {"p": [0.2, 0.9, -1.0, 0.5], "ties": [1.0, 3.0, 3.0, 1.0], "flat": [0.4, 0.4]})
    assert pairs == [("p", 1, 2), ("ties", 1, 0)]  # "flat" has no preference, so no pair


def test_max_min_drops_gaps_not_above_min_reward_gap():
    pairs = build("max_min", {"small": [0.0, 0.5], "exact": [0.0, 1.0], "large": [0.0, 1.5]}, min_gap=1.0)
    assert pairs == [("large", 1, 0)]


def test_max_random_rejects_a_random_response_the_best_one_beats_by_the_gap():
    rewards = {"p": [5.0, 0.0, 1.0, 2.0, 4.9, 3.0]}
    rejected = {build("max_random", rewards, min_gap=0.5, seed=seed)[0][2] for seed in range(40)}
    assert rejected == {1, 2, 3, 5}  # 4.9 is within the gap of the best (index 0) and never drawn
    assert build("max_random", rewards, seed=3) == build("max_random", rewards, seed=3)
    assert build("max_random", {"flat": [1.0, 1.0]}) == []


def test_all_pairs_above_margin_orders_largest_gap_first():
    pairs = build("all_pairs_above_margin", {"p": [0.0, 2.0, 1.0], "flat": [3.0, 3.0]}, min_gap=0.5)
    assert pairs == [("p", 1, 0), ("p", 1, 2), ("p", 2, 0)]


def test_unknown_pair_builder_is_rejected_when_the_policy_is_built():
    with pytest.raises(ValueError, match=r"Did you mean 'max_min'\?"):
        make_policy("pvar", pair_builder="max_mni")


# ---------------------------------------------------------------- policies

SPREADS = {"p0": 0.0, "p1": 0.5, "p2": 3.0, "p3": 1.0, "p4": 2.0, "p5": 0.1}


def spread_table() -> pa.Table:
    """Six prompts whose PVar order is the order of their reward spread: p2 > p4 > p3 > p1 > p5 > p0."""
    return make_scored({pid: [0.0, spread / 2, spread] for pid, spread in SPREADS.items()})


def test_pvar_keeps_the_highest_pvar_prompts_in_order():
    selection = make_policy("pvar", top_fraction=0.5).select(spread_table(), 10, np.random.default_rng(0))
    assert selection.pairs.column("prompt_id").to_pylist() == ["p2", "p4", "p3"]  # no padding up to 10
    assert selected_ids(selection) == {"p2", "p4", "p3"}
    pvar = selection.pairs.column("pvar").to_pylist()
    assert pvar == sorted(pvar, reverse=True) and pvar[0] == pytest.approx(preference_variance(np.array([0, 1.5, 3.0])))
    assert selection.pairs.column("chosen_reward").to_pylist() == [3.0, 2.0, 1.0]
    assert selection.pairs.column("rejected_reward").to_pylist() == [0.0, 0.0, 0.0]


def test_pvar_budget_keeps_the_pairs_of_the_highest_pvar_prompts():
    selection = make_policy("pvar", top_fraction=1.0).select(spread_table(), 2, np.random.default_rng(0))
    assert selection.pairs.column("prompt_id").to_pylist() == ["p2", "p4"]
    assert selected_ids(selection) == {"p2", "p4"}


def test_pvar_breaks_equal_pvar_ties_with_the_rng():
    equal = make_scored({f"q{i}": [0.0, 1.0] for i in range(12)})
    picks = {
        tuple(make_policy("pvar", top_fraction=0.25).select(equal, 3, np.random.default_rng(seed)).pairs.column("prompt_id").to_pylist())
        for seed in range(5)
    }
    assert len(picks) > 1


def test_prompt_stats_cover_every_prompt():
    scored = make_scored({"a": [1.0, 3.0], "solo": [2.0], "flat": [4.0, 4.0, 4.0]})
    stats = make_policy("pvar", top_fraction=1.0).select(scored, 5, np.random.default_rng(0)).prompt_stats
    assert stats.schema == PROMPT_STATS_SCHEMA
    rows = {row["prompt_id"]: row for row in stats.to_pylist()}
    assert rows["a"]["n_responses"] == 2 and rows["a"]["reward_mean"] == 2.0 and rows["a"]["reward_std"] == 1.0
    assert rows["a"]["pvar"] == pytest.approx(brute_force_pvar([1.0, 3.0], 1.0)) and rows["a"]["selected"]
    assert rows["solo"] == {
        "prompt_id": "solo", "n_responses": 1, "pvar": 0.0, "reward_mean": 2.0, "reward_std": 0.0, "selected": False,
        "pairs_available": 0, "pairs_selected": 0, "cluster": None, "informativeness": None,
    }
    assert rows["a"]["pairs_available"] == 1 and rows["a"]["pairs_selected"] == 1
    assert rows["flat"]["pvar"] == 0.0 and not rows["flat"]["selected"]


def many_prompts() -> pa.Table:
    rng = np.random.default_rng(123)
    return make_scored({f"x{i:02d}": list(rng.normal(size=4)) for i in range(40)})


def test_random_matches_the_pair_count_pvar_would_select():
    scored = many_prompts()
    for budget, top_fraction in [(5, 0.5), (50, 0.25), (50, 1.0)]:
        pvar_pairs = make_policy("pvar", top_fraction=top_fraction).select(scored, budget, np.random.default_rng(0)).pairs
        random_pairs = make_policy("random", top_fraction=top_fraction).select(scored, budget, np.random.default_rng(1)).pairs
        assert random_pairs.num_rows == pvar_pairs.num_rows == min(budget, int(np.ceil(40 * top_fraction)))
        assert len(set(random_pairs.column("prompt_id").to_pylist())) == random_pairs.num_rows


def test_random_is_reproducible_with_a_seed_and_differs_with_another():
    scored, policy = many_prompts(), make_policy("random", top_fraction=0.25)
    first = policy.select(scored, 10, np.random.default_rng(7)).pairs
    assert first.equals(policy.select(scored, 10, np.random.default_rng(7)).pairs)
    assert first.column("prompt_id").to_pylist() != policy.select(scored, 10, np.random.default_rng(8)).pairs.column("prompt_id").to_pylist()
    top_pvar = make_policy("pvar", top_fraction=0.25).select(scored, 10, np.random.default_rng(7)).pairs
    assert set(first.column("prompt_id").to_pylist()) != set(top_pvar.column("prompt_id").to_pylist())


def test_random_draws_only_prompts_that_can_make_a_pair():
    scored = make_scored({"flat0": [1.0, 1.0], "flat1": [2.0, 2.0], "solo": [0.0], "a": [0.0, 1.0], "b": [0.0, 0.2]})
    for seed in range(10):
        selection = make_policy("random", top_fraction=1.0).select(scored, 10, np.random.default_rng(seed))
        assert selected_ids(selection) == {"a", "b"}


@pytest.mark.parametrize("name", ["pvar", "random"])
def test_empty_scored_table_gives_an_empty_selection(name):
    for empty in (make_scored({}), pa.table({})):
        selection = make_policy(name).select(empty, 8, np.random.default_rng(0))
        assert selection.pairs.num_rows == 0 and selection.pairs.schema == PAIRS_SCHEMA
        assert selection.prompt_stats.num_rows == 0 and selection.prompt_stats.schema == PROMPT_STATS_SCHEMA


@pytest.mark.parametrize("name", ["pvar", "random"])
def test_pairs_table_has_exactly_the_contract_columns_and_types(name):
    scored = make_scored({"a": [0.0, 1.0, 0.5], "b": [2.0, -1.0]}, token_type=pa.int64())
    pairs = make_policy(name, top_fraction=1.0).select(scored, 8, np.random.default_rng(0)).pairs
    assert {f.name: f.type for f in pairs.schema} == CONTRACT_PAIR_COLUMNS
    rows = {row["prompt_id"]: row for row in pairs.to_pylist()}
    assert rows["b"] == {
        "prompt_id": "b",
        "prompt_token_ids": [1, 7],
        "chosen_token_ids": [100, 2],
        "rejected_token_ids": [101, 2],
        "chosen_response": "b/0",
        "rejected_response": "b/1",
        "chosen_reward": 2.0,
        "rejected_reward": -1.0,
        "pvar": pytest.approx(brute_force_pvar([2.0, -1.0], 1.0)),
    }


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="response_token_ids"):
        make_policy("pvar").select(make_scored({"a": [0.0, 1.0]}).drop_columns(["response_token_ids"]), 4, np.random.default_rng(0))


def test_policies_reject_bad_options_and_budgets():
    with pytest.raises(ValueError, match="top_fraction"):
        make_policy("pvar", top_fraction=0.0)
    with pytest.raises(ValueError, match="tau"):
        make_policy("random", tau=-1.0)
    with pytest.raises(ValueError, match="pair_budget"):
        make_policy("pvar").select(spread_table(), -1, np.random.default_rng(0))


# ---------------------------------------------------------------- registry


def test_builtin_policies_are_registered_on_import():
    assert {"pvar", "random"} <= set(registered_policies())
    assert isinstance(policies.make_policy("random"), SelectionPolicy)


def test_make_policy_builds_the_policy_from_its_options_and_refuses_others():
    policy = make_policy("pvar", top_fraction=0.3, tau=2.0, pair_builder="max_min", min_reward_gap=0.1)
    assert (policy.options.top_fraction, policy.options.tau, policy.options.min_reward_gap) == (0.3, 2.0, 0.1)
    # The config's validated options build the same policy; an option of another section is refused.
    assert make_policy(policy.options).options == policy.options
    with pytest.raises(ValueError, match="pair_budget"):
        make_policy("pvar", pair_budget=32)


def test_unknown_policy_name_lists_policies_and_suggests_the_nearest():
    with pytest.raises(ValueError, match=r"unknown selection policy 'pvra'\. Did you mean 'pvar'\?.*random"):
        make_policy("pvra")


def test_register_policy_refuses_what_is_not_a_selection_policy():
    class Loose:
        def select(self, scored, pair_budget, rng):
            return Selection.empty()

    with pytest.raises(TypeError, match="SelectionPolicy subclass"):
        register_policy("loose")(Loose)
    assert "loose" not in registered_policies()
