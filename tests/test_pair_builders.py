"""Pair builders: the (grouped, options, rng) signature, invariants of every builder, did_rejected's draw."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_tables import make_scored
from scipy.stats import chisquare

from policies import make_policy
from policies.grouping import group_rewards
from policies.pair_builders import (
    PairBuilderOptions,
    get_pair_builder,
    registered_pair_builders,
)

BUILDERS = ("max_min", "max_random", "all_pairs_above_margin", "did_rejected")


def build(name: str, rewards_by_prompt: dict[str, list[float]], seed: int = 0, **options):
    """The builder's pairs as (prompt_id, chosen sample_index, rejected sample_index)."""
    grouped = group_rewards(make_scored(rewards_by_prompt))
    pairs = get_pair_builder(name)(grouped, PairBuilderOptions(**options), np.random.default_rng(seed))
    return [
        (grouped.prompt_ids[c], int(grouped.sample_index[w]), int(grouped.sample_index[l]))
        for c, w, l in zip(pairs.prompt_codes, pairs.chosen_rows, pairs.rejected_rows)
    ]


def test_every_builder_is_registered():
    assert set(BUILDERS) <= set(registered_pair_builders())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), min_size=1, max_size=6), min_size=1, max_size=5),
    st.sampled_from([0.0, 0.5, 1.2]),
    st.sampled_from(BUILDERS),
    st.integers(0, 1000),
)
def test_every_builder_pairs_within_a_prompt_a_better_response_by_more_than_the_gap(groups, gap, name, seed):
    rewards = {f"p{g}": group for g, group in enumerate(groups)}
    pairs = build(name, rewards, seed, min_reward_gap=gap, did_tau=0.5)
    for prompt_id, chosen, rejected in pairs:
        assert rewards[prompt_id][chosen] - rewards[prompt_id][rejected] > max(gap, 0.0)
    codes = [int(p[1:]) for p, _, _ in pairs]
    assert codes == sorted(codes)  # grouped by prompt
    if name != "all_pairs_above_margin":
        # One pair per prompt, chosen = the best response (lowest sample_index among ties), made
        # exactly when some response is beaten by more than the gap.
        assert len(set(codes)) == len(codes)
        expected = {f"p{g}" for g, group in enumerate(groups) if max(group) - min(group) > gap}
        assert {p for p, _, _ in pairs} == expected
        for prompt_id, chosen, _ in pairs:
            assert chosen == int(np.argmax(rewards[prompt_id]))


def test_builder_options_are_validated():
    for bad in ({"min_reward_gap": -1.0}, {"min_reward_gap": float("inf")}, {"did_tau": 0.0}, {"did_tau": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PairBuilderOptions(**bad)


# ---------------------------------------------------------------- did_rejected


def rejected_frequencies(rewards: list[float], copies: int, seed: int, **options) -> np.ndarray:
    """How often each response is rejected over `copies` identical prompts (one vectorised call)."""
    pairs = build("did_rejected", {f"c{k}": rewards for k in range(copies)}, seed, **options)
    return np.bincount([rejected for _, _, rejected in pairs], minlength=len(rewards))


def did_probabilities(rewards: list[float], tau: float, gap: float) -> np.ndarray:
    rewards_array = np.asarray(rewards)
    eligible = rewards_array.max() - rewards_array > max(gap, 0.0)
    weights = np.where(eligible, np.exp(-rewards_array / tau), 0.0)
    return weights / weights.sum()


@pytest.mark.parametrize("tau, gap", [(1.0, 0.0), (0.4, 0.3), (3.0, 0.0)])
def test_did_rejected_draws_in_proportion_to_exp_minus_reward_over_tau(tau, gap):
    rewards = [2.0, 0.0, 0.5, 1.0, 1.9, -0.5]
    counts = rejected_frequencies(rewards, 20000, seed=11, did_tau=tau, min_reward_gap=gap)
    expected = did_probabilities(rewards, tau, gap)
    assert counts.sum() == 20000
    assert np.all(counts[expected == 0] == 0)  # the chosen one and anything within the gap: never
    drawn = expected > 0
    _, p_value = chisquare(counts[drawn], 20000 * expected[drawn])
    assert p_value > 1e-3
    # The test has power: a uniform draw over the same responses is rejected outright.
    _, p_uniform = chisquare(counts[drawn], np.full(drawn.sum(), 20000 / drawn.sum()))
    assert p_uniform < 1e-6


def test_did_rejected_ignores_a_shift_of_every_reward_and_survives_extreme_scales():
    rewards = [2.0, 0.0, 0.5, 1.0]
    base = rejected_frequencies(rewards, 4000, seed=5)
    shifted = rejected_frequencies([r + 1e6 for r in rewards], 4000, seed=5)
    np.testing.assert_array_equal(base, shifted)  # same rng stream, same shifted log-weights
    # A tiny temperature with huge rewards: exp(-r/tau) underflows everywhere, the draw does not.
    huge = rejected_frequencies([3e300, 1e300, 2e300], 200, seed=1, did_tau=1e-3)
    assert huge.tolist() == [0, 200, 0]
    # A huge temperature draws almost uniformly among eligible responses.
    flat = rejected_frequencies([10.0, 0.0, 1.0, 2.0], 6000, seed=2, did_tau=1e9)
    assert flat[0] == 0 and np.all(np.abs(flat[1:] / 6000 - 1 / 3) < 0.03)


def test_did_rejected_chooses_the_best_with_max_min_ties_and_skips_prompts_without_a_gap():
    pairs = build("did_rejected", {"ties": [1.0, 3.0, 3.0, 1.0], "flat": [0.4, 0.4], "solo": [2.0], "near": [1.0, 1.2]}, min_reward_gap=0.5)
    assert [(p, chosen) for p, chosen, _ in pairs] == [("ties", 1)]
    assert pairs[0][2] in (0, 3)
    assert build("did_rejected", {"p": [5.0, 0.0, 1.0]}, seed=4) == build("did_rejected", {"p": [5.0, 0.0, 1.0]}, seed=4)


def test_policies_pass_did_tau_to_the_builder():
    # With a tiny did_tau the rejected response is always the lowest-reward one, as max_min would pick.
    scored = make_scored({f"q{k}": [3.0, 0.0, 1.0, 2.0] for k in range(50)})
    sharp = make_policy("full", pair_builder="did_rejected", did_tau=1e-3).select(scored, 0, np.random.default_rng(0))
    assert set(sharp.pairs.column("rejected_reward").to_pylist()) == {0.0}
    soft = make_policy("full", pair_builder="did_rejected", did_tau=100.0).select(scored, 0, np.random.default_rng(0))
    assert set(soft.pairs.column("rejected_reward").to_pylist()) == {0.0, 1.0, 2.0}


def test_best_vs_rest_pairs_the_best_with_every_response_it_beats():
    scored = make_scored({"a": [1.0, 3.0, 0.0, 3.0, 2.5], "flat": [1.0, 1.0], "b": [0.0, 0.5]})
    grouped = group_rewards(scored)
    pairs = get_pair_builder("best_vs_rest")(grouped, PairBuilderOptions(min_reward_gap=0.4), np.random.default_rng(0))
    got = [(grouped.prompt_ids[c], int(grouped.sample_index[w]), int(grouped.sample_index[l]))
           for w, l, c in zip(pairs.chosen_rows, pairs.rejected_rows, pairs.prompt_codes)]
    # Best of "a" is sample 1 (ties to the lower index; sample 3 ties it, so it is no pair); the gap
    # to 2.5 is 0.5 > 0.4, largest gaps first; "flat" ties give nothing; "b" gaps 0.5.
    assert got == [("a", 1, 2), ("a", 1, 0), ("a", 1, 4), ("b", 1, 0)]
