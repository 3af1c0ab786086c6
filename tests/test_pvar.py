"""PVar forms and modes: reward ensembles, the implicit form and its round-0 fallback, top/bottom/threshold."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_tables import (
    GivenLogratios,
    brute_force_ensemble_pvar,
    brute_force_implicit_pvar,
    brute_force_pvar,
    make_scored,
    selected_ids,
    stats_by_prompt,
)

from policies import make_policy
from actors.contracts import PROMPT_STATS_SCHEMA
from policies.grouping import group_rewards
from policies.pvar import (
    PVarSpec,
    grouped_ensemble_preference_variance,
    grouped_implicit_preference_variance,
    grouped_preference_variance,
    prompt_pvar,
)

finite = st.floats(-20, 20, allow_nan=False, allow_infinity=False)
ENSEMBLES = ("mean_probability", "mean_variance")

# A prompt: 0..6 responses, each with one value per column (3 columns at most).
prompt_rows = st.integers(1, 3).flatmap(
    lambda m: st.lists(st.lists(st.lists(finite, min_size=m, max_size=m), min_size=0, max_size=6), min_size=1, max_size=5)
)


def columns_of(group: list[list[float]], n_columns: int) -> list[list[float]]:
    return [[row[m] for row in group] for m in range(n_columns)]


# ---------------------------------------------------------------- reward ensembles


@settings(max_examples=60, deadline=None)
@given(prompt_rows, st.floats(0.2, 5), st.sampled_from(ENSEMBLES), st.randoms())
def test_ensemble_pvar_equals_brute_force_loops(groups, tau, ensemble, shuffler):
    n_columns = next((len(g[0]) for g in groups if g), 1)
    rows = [(g, values) for g, group in enumerate(groups) for values in group]
    shuffler.shuffle(rows)
    codes = np.array([g for g, _ in rows], dtype=np.int64)
    matrix = np.array([values for _, values in rows], dtype=np.float64).reshape(len(rows), n_columns)
    got = grouped_ensemble_preference_variance(codes, matrix, tau, ensemble, n_groups=len(groups))
    expected = [brute_force_ensemble_pvar(columns_of(g, n_columns), tau, ensemble) if g else 0.0 for g in groups]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(finite, min_size=0, max_size=6), min_size=1, max_size=5), st.floats(0.2, 5))
def test_one_column_ensembles_equal_plain_pvar(groups, tau):
    codes = np.array([g for g, group in enumerate(groups) for _ in group], dtype=np.int64)
    rewards = np.array([r for group in groups for r in group], dtype=np.float64)
    plain = grouped_preference_variance(codes, rewards, tau, n_groups=len(groups))
    for ensemble in ENSEMBLES:
        np.testing.assert_allclose(
            grouped_ensemble_preference_variance(codes, rewards[:, None], tau, ensemble, len(groups)), plain, rtol=1e-12, atol=1e-16
        )


def test_the_two_ensembles_differ_when_columns_disagree():
    # Two columns that order the responses oppositely: their mean probability is 1/2 everywhere
    # (no agreed preference, PVar 0), while each column alone is decisive.
    a, b = [0.0, 1.0, 2.0], [2.0, 1.0, 0.0]
    assert brute_force_ensemble_pvar([a, b], 1.0, "mean_probability") == pytest.approx(0.0, abs=1e-15)
    codes = np.zeros(3, dtype=np.int64)
    matrix = np.column_stack([a, b])
    assert grouped_ensemble_preference_variance(codes, matrix, 1.0, "mean_probability")[0] == pytest.approx(0.0, abs=1e-15)
    assert grouped_ensemble_preference_variance(codes, matrix, 1.0, "mean_variance")[0] == pytest.approx(brute_force_pvar(a, 1.0))


def selection_table() -> pa.Table:
    """Prompt "sel" is flat under the training reward's scale but spread under the selection model,
    "train" the other way round; "both" is spread under both."""
    return make_scored(
        {"sel": [0.0, 0.1, 0.2], "train": [0.0, 2.0, 4.0], "both": [0.0, 1.0, 2.0]},
        extra={"reward_sel": {"sel": [0.0, 3.0, 6.0], "train": [1.0, 1.0, 1.0], "both": [0.0, 1.0, 2.0]}},
    )


def test_policy_ranks_by_the_named_selection_column_and_labels_with_reward():
    scored = selection_table()
    by_selection = make_policy("pvar", top_fraction=0.3, pvar_rewards=["reward_sel"]).select(scored, 8, np.random.default_rng(0))
    assert selected_ids(by_selection) == {"sel"}
    # Pairs are still labelled by the training reward.
    assert by_selection.pairs.to_pylist()[0]["chosen_reward"] == 0.2
    assert by_selection.pairs.to_pylist()[0]["rejected_reward"] == 0.0
    stats = stats_by_prompt(by_selection)
    assert stats["sel"]["pvar"] == pytest.approx(brute_force_pvar([0.0, 3.0, 6.0], 1.0))
    by_training = make_policy("pvar", top_fraction=0.3).select(scored, 8, np.random.default_rng(0))
    assert selected_ids(by_training) == {"train"}


@pytest.mark.parametrize("ensemble", ENSEMBLES)
def test_policy_ensemble_statistic_matches_brute_force(ensemble):
    scored = selection_table()
    selection = make_policy(
        "pvar", top_fraction=1.0, tau=0.7, pvar_rewards=("reward", "reward_sel"), pvar_ensemble=ensemble
    ).select(scored, 8, np.random.default_rng(0))
    table = scored.to_pylist()
    for prompt_id, row in stats_by_prompt(selection).items():
        mine = sorted((r for r in table if r["prompt_id"] == prompt_id), key=lambda r: r["sample_index"])
        columns = [[r["reward"] for r in mine], [r["reward_sel"] for r in mine]]
        assert row["pvar"] == pytest.approx(brute_force_ensemble_pvar(columns, 0.7, ensemble), rel=1e-9, abs=1e-15)


def test_missing_pvar_column_is_named_with_the_columns_that_exist():
    with pytest.raises(ValueError, match=r"\['reward_big'\].*reward columns are \['reward', 'reward_sel'\]"):
        make_policy("pvar", pvar_rewards=["reward", "reward_big"]).select(selection_table(), 4, np.random.default_rng(0))


def test_nan_in_a_selection_column_names_the_prompt_and_the_column():
    scored = make_scored({"ok": [0.0, 1.0], "bad": [0.0, 1.0]}, extra={"reward_sel": {"ok": [0.0, 1.0], "bad": [np.nan, 1.0]}})
    with pytest.raises(ValueError, match=r"non-finite reward column 'reward_sel' nan for prompt 'bad'"):
        make_policy("pvar", pvar_rewards=["reward_sel"]).select(scored, 4, np.random.default_rng(0))
    # A null reads as NaN and gets the same error.
    nulls = scored.set_column(scored.column_names.index("reward_sel"), "reward_sel", pa.array([None, 1.0, 2.0, 3.0], pa.float64()))
    with pytest.raises(ValueError, match="non-finite reward column 'reward_sel'"):
        make_policy("pvar", pvar_rewards=["reward_sel"]).select(nulls, 4, np.random.default_rng(0))


def test_a_non_numeric_pvar_column_is_refused():
    with pytest.raises(ValueError, match=r"\['response'\] are not numeric"):
        make_policy("pvar", pvar_rewards=["response"]).select(selection_table(), 4, np.random.default_rng(0))


# ---------------------------------------------------------------- implicit PVar


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(finite, min_size=0, max_size=6), min_size=1, max_size=5), st.floats(0.01, 3))
def test_grouped_implicit_pvar_equals_brute_force(groups, beta):
    codes = np.array([g for g, group in enumerate(groups) for _ in group], dtype=np.int64)
    logratios = np.array([v for group in groups for v in group], dtype=np.float64)
    got = grouped_implicit_preference_variance(codes, logratios, beta, n_groups=len(groups))
    np.testing.assert_allclose(got, [brute_force_implicit_pvar(g, beta) for g in groups], rtol=1e-9, atol=1e-15)


def implicit_case() -> tuple[pa.Table, GivenLogratios]:
    # Rewards rank "r" first; the log-ratios rank "l" first. "one" has a single response.
    scored = make_scored({"r": [0.0, 5.0, 10.0], "l": [0.0, 0.1, 0.2], "one": [1.0]})
    probe = GivenLogratios({"r": [0.0, 0.1, -0.1], "l": [-20.0, 0.0, 30.0], "one": [4.0]})
    return scored, probe


def test_implicit_policy_statistic_matches_brute_force_and_ranks_by_it():
    scored, probe = implicit_case()
    policy = make_policy("pvar", top_fraction=0.3, pvar_source="implicit", implicit_beta=0.3)
    selection = policy.select(scored, 8, np.random.default_rng(0), probe=probe)
    stats = stats_by_prompt(selection)
    for prompt_id, logratios in probe.logratios_by_prompt.items():
        assert stats[prompt_id]["pvar"] == pytest.approx(brute_force_implicit_pvar(logratios, 0.3), rel=1e-9, abs=1e-15)
    assert stats["one"]["pvar"] == 0.0
    assert selected_ids(selection) == {"l"}
    assert make_policy("pvar", top_fraction=0.3).select(scored, 8, np.random.default_rng(0)).pairs.column("prompt_id").to_pylist() == ["r"]
    assert probe.calls == 1


def test_implicit_pvar_falls_back_to_the_reward_form_while_every_logratio_is_zero(caplog):
    scored, _ = implicit_case()
    zeros = GivenLogratios({"r": [0.0, 0.0, 0.0], "l": [0.0, 0.0, 0.0], "one": [0.0]})
    spec = PVarSpec(source="implicit", tau=2.0)
    with caplog.at_level(logging.INFO, logger="policies.pvar"):
        result = prompt_pvar(scored, group_rewards(scored), spec, zeros)
    assert result.source == "reward"
    assert "every log-ratio is 0" in caplog.text
    reward_form = prompt_pvar(scored, group_rewards(scored), PVarSpec(tau=2.0))
    np.testing.assert_array_equal(result.values, reward_form.values)
    assert result.values[0] == pytest.approx(brute_force_pvar([0.0, 5.0, 10.0], 2.0))
    # The policy therefore ranks by rewards in round 0.
    selection = make_policy("pvar", top_fraction=0.3, pvar_source="implicit").select(scored, 8, np.random.default_rng(0), zeros)
    assert selected_ids(selection) == {"r"}
    # One non-zero log-ratio anywhere is enough for the implicit form (a prompt may legitimately tie).
    almost = GivenLogratios({"r": [0.0, 0.0, 0.0], "l": [0.0, 0.0, 0.0], "one": [1e-9]})
    implicit = prompt_pvar(scored, group_rewards(scored), spec, almost)
    assert implicit.source == "implicit" and np.all(implicit.values == 0.0)


def test_implicit_pvar_needs_the_model_probe():
    scored, _ = implicit_case()
    for name in ("pvar", "random", "bottom_pvar", "full", "uniform_balance"):
        with pytest.raises(ValueError, match="implicit.*needs the model probe"):
            make_policy(name, pvar_source="implicit").select(scored, 4, np.random.default_rng(0))


def test_implicit_pvar_rejects_bad_logratios_naming_the_prompt():
    scored, _ = implicit_case()
    policy = make_policy("pvar", pvar_source="implicit")
    nan = GivenLogratios({"r": [0.0, 1.0, 2.0], "l": [0.0, float("nan"), 1.0], "one": [0.0]})
    with pytest.raises(ValueError, match="non-finite log-ratio nan for prompt 'l'"):
        policy.select(scored, 4, np.random.default_rng(0), nan)

    class TooFew(GivenLogratios):
        def response_logratios(self, scored):
            return super().response_logratios(scored)[:-1]

    with pytest.raises(ValueError, match="one log-ratio per row"):
        policy.select(scored, 4, np.random.default_rng(0), TooFew(nan.logratios_by_prompt))


def test_implicit_pvar_with_an_empty_round_is_an_empty_selection():
    selection = make_policy("pvar", pvar_source="implicit").select(make_scored({}), 4, np.random.default_rng(0), GivenLogratios({}))
    assert selection.pairs.num_rows == 0 and selection.prompt_stats.schema == PROMPT_STATS_SCHEMA


def test_ties_and_single_responses_give_zero_in_every_form():
    scored = make_scored({"tie": [1.0, 1.0, 1.0], "one": [2.0]}, extra={"reward_sel": {"tie": [3.0, 3.0, 3.0], "one": [0.0]}})
    for ensemble in ENSEMBLES:
        stats = stats_by_prompt(
            make_policy("pvar", pvar_rewards=["reward", "reward_sel"], pvar_ensemble=ensemble).select(scored, 4, np.random.default_rng(0))
        )
        assert stats["tie"]["pvar"] == 0.0 and stats["one"]["pvar"] == 0.0
    tied = GivenLogratios({"tie": [0.5, 0.5, 0.5], "one": [1.0]})
    stats = stats_by_prompt(make_policy("pvar", pvar_source="implicit").select(scored, 4, np.random.default_rng(0), tied))
    assert stats["tie"]["pvar"] == 0.0 and stats["one"]["pvar"] == 0.0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pvar_source": "logits"}, "pvar_source"),
        ({"pvar_ensemble": "median"}, "pvar_ensemble"),
        ({"pvar_rewards": "reward"}, r"pvar_rewards must be a list.*\['reward'\]"),
        ({"pvar_rewards": []}, "at least one"),
        ({"pvar_rewards": ["reward", "reward"]}, "twice"),
        ({"implicit_beta": 0.0}, "implicit_beta"),
        ({"tau": float("inf")}, "tau"),
        ({"pvar_mode": "middle"}, "pvar_mode"),
        ({"pvar_mode": "bottom"}, "pvar_mode"),
        ({"pvar_threshold": 0.3}, "pvar_threshold"),
        ({"pvar_threshold": -0.1}, "pvar_threshold"),
        ({"did_tau": 0.0}, "did_tau"),
        ({"min_reward_gap": float("nan")}, "min_reward_gap"),
    ],
)
def test_bad_pvar_options_fail_when_the_policy_is_built(options, message):
    with pytest.raises(ValueError, match=message):
        make_policy("pvar", **options)


def test_a_list_of_columns_is_stored_as_a_tuple():
    policy = make_policy("pvar", pvar_rewards=["reward", "reward_sel"])
    assert policy.options.pvar_rewards == ("reward", "reward_sel")


@pytest.mark.parametrize("value", [0.0, 1.5])
def test_bottom_fraction_is_a_fraction(value):
    with pytest.raises(ValueError, match="bottom_fraction"):
        make_policy("bottom_pvar", bottom_fraction=value)


# ---------------------------------------------------------------- modes

SPREADS = {"p0": 0.0, "p1": 0.5, "p2": 3.0, "p3": 1.0, "p4": 2.0, "p5": 0.1}


def spread_table() -> pa.Table:
    """Six prompts whose PVar order is the order of their reward spread: p2 > p4 > p3 > p1 > p5 > p0 (flat)."""
    return make_scored({pid: [0.0, spread / 2, spread] for pid, spread in SPREADS.items()})


def test_bottom_mode_keeps_the_lowest_pvar_prompts_that_can_make_a_pair():
    selection = make_policy("bottom_pvar", bottom_fraction=0.5).select(spread_table(), 10, np.random.default_rng(0))
    # p0 has the lowest PVar but no pair, so the three kept are the next lowest, lowest first.
    assert selection.pairs.column("prompt_id").to_pylist() == ["p5", "p1", "p3"]
    smaller = make_policy("bottom_pvar", bottom_fraction=0.2).select(
        spread_table(), 10, np.random.default_rng(0)
    )
    assert smaller.pairs.column("prompt_id").to_pylist() == ["p5", "p1"]
    capped = make_policy("bottom_pvar", bottom_fraction=1.0).select(spread_table(), 2, np.random.default_rng(0))
    assert capped.pairs.column("prompt_id").to_pylist() == ["p5", "p1"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=2, max_size=12), st.floats(0.05, 1.0), st.integers(0, 2**32 - 1))
def test_bottom_mode_equals_sorting_pair_making_prompts_by_pvar(spread_steps, fraction, seed):
    # Distinct spreads give distinct PVars, except 0 (a flat prompt, which cannot make a pair).
    rewards = {f"q{i}": [0.0, step * 0.37 + i * 1e-3 if step else 0.0] for i, step in enumerate(spread_steps)}
    scored = make_scored(rewards)
    selection = make_policy("bottom_pvar", bottom_fraction=fraction).select(scored, 100, np.random.default_rng(seed))
    stats = stats_by_prompt(selection)
    pair_making = sorted((row["pvar"], pid) for pid, row in stats.items() if row["pairs_available"] > 0)
    n_keep = min(len(pair_making), int(np.ceil(round(fraction * len(rewards), 9))))
    assert selection.pairs.column("prompt_id").to_pylist() == [pid for _, pid in pair_making[:n_keep]]


def test_bottom_keeps_as_many_prompts_as_top_by_default():
    scored = make_scored({f"x{i}": list(np.random.default_rng(i).normal(size=4)) for i in range(20)})
    for fraction in (0.1, 0.25, 0.5):
        top = make_policy("pvar", top_fraction=fraction).select(scored, 100, np.random.default_rng(0))
        bottom = make_policy("bottom_pvar", bottom_fraction=fraction).select(scored, 100, np.random.default_rng(0))
        assert len(selected_ids(top)) == len(selected_ids(bottom)) == int(np.ceil(20 * fraction))
        assert not selected_ids(top) & selected_ids(bottom)


def test_bottom_pvar_takes_no_pvar_mode():
    # The lowest-PVar arm is a policy of its own: nothing in its options can turn it into the top arm.
    with pytest.raises(ValueError, match="pvar_mode"):
        make_policy("bottom_pvar", pvar_mode="top")
    assert make_policy("bottom_pvar").name == "bottom_pvar"


def test_threshold_mode_keeps_every_prompt_at_or_above_the_threshold_highest_first():
    scored = spread_table()
    stats = stats_by_prompt(make_policy("pvar", top_fraction=1.0).select(scored, 10, np.random.default_rng(0)))
    threshold = stats["p3"]["pvar"]  # exactly p3's PVar: >= keeps it
    selection = make_policy("pvar", pvar_mode="threshold", pvar_threshold=threshold).select(scored, 10, np.random.default_rng(0))
    assert selection.pairs.column("prompt_id").to_pylist() == ["p2", "p4", "p3"]
    assert all(row["pvar"] >= threshold for row in selection.pairs.to_pylist())
    capped = make_policy("pvar", pvar_mode="threshold", pvar_threshold=threshold).select(scored, 2, np.random.default_rng(0))
    assert capped.pairs.column("prompt_id").to_pylist() == ["p2", "p4"]
    everything = make_policy("pvar", pvar_mode="threshold").select(scored, 10, np.random.default_rng(0))
    assert everything.pairs.column("prompt_id").to_pylist() == ["p2", "p4", "p3", "p1", "p5"]  # p0 makes no pair
    assert make_policy("pvar", pvar_mode="threshold", pvar_threshold=0.25).select(scored, 10, np.random.default_rng(0)).pairs.num_rows == 0


@pytest.mark.parametrize("options", [{"pvar_mode": "top", "top_fraction": 0.3}, {"pvar_mode": "threshold", "pvar_threshold": 0.02}])
def test_random_matches_the_pair_count_of_every_pvar_mode(options):
    scored = make_scored({f"x{i:02d}": list(np.random.default_rng(100 + i).normal(size=4)) for i in range(30)})
    for budget in (3, 100):
        pvar_pairs = make_policy("pvar", **options).select(scored, budget, np.random.default_rng(0)).pairs
        random_pairs = make_policy("random", **options).select(scored, budget, np.random.default_rng(1)).pairs
        assert random_pairs.num_rows == pvar_pairs.num_rows > 0
