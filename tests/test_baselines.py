"""The comparison arms (full, uniform_balance) and what every built-in policy promises the driver."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_tables import (
    GivenLogratios,
    brute_force_pvar,
    make_scored,
    selected_ids,
    stats_by_prompt,
)

from policies import make_policy, policy_options, registered_policies
from actors.contracts import PAIRS_SCHEMA, PROMPT_STATS_SCHEMA

# The policies this file covers (bpo needs prompt embeddings and gradients: tests/test_bpo.py).
POLICIES = ("pvar", "bottom_pvar", "random", "full", "uniform_balance")

# The policies' own options, as the driver hands them to make_policy.
def options_of(name: str, **shared) -> dict:
    """`shared` plus those of the policy's own options it has (top_fraction, pvar_mode and pvar_threshold;
    bottom_fraction; pairs_per_prompt), each set to a value other than its default."""
    extra = {"top_fraction": 0.75, "pvar_mode": "threshold", "pvar_threshold": 0.01, "bottom_fraction": 0.75,
             "pairs_per_prompt": 3}
    fields = policy_options(name).model_fields
    return {**{key: value for key, value in extra.items() if key in fields}, **shared}


def many_prompts(n: int = 24, responses: int = 4, seed: int = 123) -> pa.Table:
    rng = np.random.default_rng(seed)
    return make_scored({f"x{i:02d}": list(rng.normal(size=responses)) for i in range(n)})


def pair_counts(selection) -> Counter:
    return Counter(selection.pairs.column("prompt_id").to_pylist())


# ---------------------------------------------------------------- full


def test_full_takes_every_pair_of_every_prompt_and_ignores_the_budget():
    scored = make_scored({"a": [0.0, 1.0, 2.0], "b": [0.0, 0.0], "c": [1.0, 3.0, 2.0, 0.0], "solo": [1.0]})
    for budget in (0, 1, 1000):
        selection = make_policy("full", pair_builder="all_pairs_above_margin").select(scored, budget, np.random.default_rng(0))
        assert pair_counts(selection) == {"a": 3, "c": 6}
        assert selected_ids(selection) == {"a", "c"}
    stats = stats_by_prompt(selection)
    assert all(row["pairs_selected"] == row["pairs_available"] for row in stats.values())
    one_each = make_policy("full").select(scored, 1, np.random.default_rng(0))
    assert one_each.pairs.column("prompt_id").to_pylist() == ["a", "c"]  # max_min: one pair, first-appearance order


# ---------------------------------------------------------------- uniform_balance


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_uniform_balance_gives_every_prompt_the_same_depth_within_the_budget(budget, per_prompt, seed):
    scored = many_prompts()  # 24 prompts x 4 distinct rewards: 6 pairs each
    selection = make_policy("uniform_balance", pairs_per_prompt=per_prompt).select(scored, budget, np.random.default_rng(seed))
    counts = sorted(pair_counts(selection).values(), reverse=True)
    depth = min(per_prompt, 6)
    n_prompts = min(24, math.ceil(budget / per_prompt))
    assert selection.pairs.num_rows == min(budget, n_prompts * depth)
    assert len(counts) == n_prompts
    # Equal depth, except the last prompt drawn, which takes the remainder of the budget.
    assert all(c == depth for c in counts[:-1]) and 1 <= counts[-1] <= depth


def test_uniform_balance_takes_each_prompts_largest_gaps_from_the_depth_builder():
    scored = make_scored({f"q{k}": [0.0, 1.0, 3.0, 6.0] for k in range(5)})
    selection = make_policy("uniform_balance", pairs_per_prompt=2).select(scored, 4, np.random.default_rng(0))
    assert pair_counts(selection) == Counter({pid: 2 for pid in pair_counts(selection)}) and len(pair_counts(selection)) == 2
    gaps = [row["chosen_reward"] - row["rejected_reward"] for row in selection.pairs.to_pylist()]
    assert gaps == [6.0, 5.0, 6.0, 5.0]  # 6-0 then 6-1: all_pairs_above_margin's order
    # pair_builder is not what uniform_balance uses (max_min would allow one pair per prompt).
    same = make_policy("uniform_balance", pairs_per_prompt=2, pair_builder="max_min").select(scored, 4, np.random.default_rng(0))
    assert same.pairs.equals(selection.pairs)


def test_uniform_balance_prefers_prompts_that_can_give_full_depth():
    shallow = {f"s{k}": [0.0, 1.0] for k in range(10)}  # one pair each
    deep = {f"d{k}": [0.0, 1.0, 2.0] for k in range(3)}  # three pairs each
    scored = make_scored({**shallow, **deep})
    for seed in range(5):
        selection = make_policy("uniform_balance", pairs_per_prompt=3).select(scored, 9, np.random.default_rng(seed))
        assert pair_counts(selection) == {"d0": 3, "d1": 3, "d2": 3}
    # Not enough deep prompts: the shallow ones fill in with what they have.
    selection = make_policy("uniform_balance", pairs_per_prompt=3).select(scored, 15, np.random.default_rng(0))
    counts = pair_counts(selection)
    assert {k: v for k, v in counts.items() if k.startswith("d")} == {"d0": 3, "d1": 3, "d2": 3}
    assert sum(1 for k in counts if k.startswith("s")) == 2 and selection.pairs.num_rows == 11


def test_uniform_balance_draws_prompts_at_random_and_reproducibly():
    scored, policy = many_prompts(), make_policy("uniform_balance", pairs_per_prompt=2)
    first = policy.select(scored, 8, np.random.default_rng(7)).pairs
    assert first.equals(policy.select(scored, 8, np.random.default_rng(7)).pairs)
    draws = {frozenset(policy.select(scored, 8, np.random.default_rng(seed)).pairs.column("prompt_id").to_pylist()) for seed in range(6)}
    assert len(draws) > 1


def test_uniform_balance_never_draws_a_prompt_without_pairs():
    scored = make_scored({"flat": [1.0, 1.0], "solo": [0.0], "a": [0.0, 1.0, 2.0], "b": [2.0, 0.0]})
    selection = make_policy("uniform_balance", pairs_per_prompt=2).select(scored, 100, np.random.default_rng(0))
    assert pair_counts(selection) == {"a": 2, "b": 1}


@pytest.mark.parametrize("options, message", [
    ({"pairs_per_prompt": 0}, "pairs_per_prompt"), ({"pairs_per_prompt": 2.5}, "pairs_per_prompt"),
    ({"pairs_per_prompt": True}, "pairs_per_prompt"), ({"depth_pair_builder": "all_pairs"}, "all_pairs_above_margin"),
])
def test_uniform_balance_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        make_policy("uniform_balance", **options)


# ---------------------------------------------------------------- every policy


def test_every_policy_here_is_registered():
    assert set(POLICIES) <= set(registered_policies())


@pytest.mark.parametrize("name", POLICIES)
def test_each_policy_reads_its_own_options_and_refuses_the_others(name):
    fields = policy_options(name).model_fields
    assert {"pvar_rewards", "did_tau", "tau", "pair_builder"} <= set(fields)
    assert ("pairs_per_prompt" in fields) == (name == "uniform_balance")
    assert ("pvar_mode" in fields) == (name in ("pvar", "random"))
    assert ("top_fraction" in fields) == (name in ("pvar", "random"))
    foreign = "pairs_per_prompt" if name != "uniform_balance" else "pvar_mode"
    with pytest.raises(ValueError, match=foreign):
        make_policy(name, **{foreign: 3})


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("source", ["reward", "implicit"])
def test_policy_output_follows_the_contract(name, source):
    scored = many_prompts(n=12)
    probe = GivenLogratios({pid: list(np.linspace(-1, 1, 4) * (k + 1)) for k, pid in enumerate(f"x{i:02d}" for i in range(12))})
    policy = make_policy(name, **options_of(name, pvar_source=source, implicit_beta=0.1))
    positional = policy.select(scored, 7, np.random.default_rng(0), probe)
    keyword = policy.select(scored, 7, np.random.default_rng(0), probe=probe)
    assert positional.pairs.equals(keyword.pairs)
    if source == "reward":
        assert policy.select(scored, 7, np.random.default_rng(0)).pairs.equals(positional.pairs)
    selection = positional
    assert selection.pairs.schema == PAIRS_SCHEMA and selection.prompt_stats.schema == PROMPT_STATS_SCHEMA
    stats = selection.prompt_stats.to_pylist()
    assert [row["prompt_id"] for row in stats] == [f"x{i:02d}" for i in range(12)]
    if name != "full":
        assert selection.pairs.num_rows <= 7
    counts = pair_counts(selection)
    for row in stats:
        assert row["pairs_selected"] == counts.get(row["prompt_id"], 0) <= row["pairs_available"]
        assert row["selected"] == (row["pairs_selected"] > 0)
        assert row["cluster"] is None and row["informativeness"] is None
    # The pvar statistic is the configured form, on every row and every pair.
    pvar_of = {row["prompt_id"]: row["pvar"] for row in stats}
    if source == "reward":
        rewards = {row["prompt_id"]: [] for row in stats}
        for row in sorted(scored.to_pylist(), key=lambda r: r["sample_index"]):
            rewards[row["prompt_id"]].append(row["reward"])
        assert all(pvar_of[p] == pytest.approx(brute_force_pvar(r, 1.0)) for p, r in rewards.items())
    assert all(row["pvar"] == pvar_of[row["prompt_id"]] for row in selection.pairs.to_pylist())


@pytest.mark.parametrize("name", POLICIES)
def test_policy_handles_empty_and_degenerate_rounds(name):
    policy = make_policy(name)
    for empty in (make_scored({}), pa.table({})):
        selection = policy.select(empty, 8, np.random.default_rng(0))
        assert selection.pairs.num_rows == 0 and selection.prompt_stats.schema == PROMPT_STATS_SCHEMA
    flat = make_scored({"flat": [1.0, 1.0, 1.0], "solo": [2.0]})
    selection = policy.select(flat, 8, np.random.default_rng(0))
    assert selection.pairs.num_rows == 0 and selection.prompt_stats.num_rows == 2
    assert selection.prompt_stats.column("pvar").to_pylist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="pair_budget"):
        policy.select(flat, -1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="prompt-with-nan"):
        policy.select(make_scored({"ok": [0.0, 1.0], "prompt-with-nan": [np.nan, 1.0]}), 4, np.random.default_rng(0))
