"""The `ensemble` query selector (policies/query/ensemble.py): its epistemic reward model learns the
labels and disagrees where it has none, and its mask labels pairs, under the budget, most disputed
prompts first. Pure: texts built here, no Ray."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pytest
import torch

from policies.query import QuerySettings, make_query, prompt_groups
from policies.query.ensemble import EnsembleQuery
from policies.query.ensemble_options import EnsembleOptions

# Responses are words of SEEN (plus "good" or "bad", the only words the reward depends on), or of
# UNSEEN, which no labelled row contains.
SEEN = ("apple", "river", "stone", "cloud", "tiger", "piano", "maple", "ocean", "candle", "forest", "silver", "garden")
UNSEEN = ("quartz", "zephyr", "glyph", "nymph", "vortex", "jinx", "waltz", "fjord", "sphinx", "kayak", "lynx", "oxide")
PROMPTS = ("write about nature", "describe an object", "tell a short story")


def response(rng: np.random.Generator, vocabulary, verdict: str | None = None) -> str:
    words = list(rng.choice(vocabulary, size=4))
    if verdict:
        words.insert(int(rng.integers(5)), verdict)
    return " ".join(words)


def labelled_table(rows: int, seed: int = 0) -> pa.Table:
    """Reward 1 for responses with "good", 0 with "bad": known, and learnable from single words."""
    rng = np.random.default_rng(seed)
    verdicts = rng.choice(["good", "bad"], size=rows)
    return pa.table({
        "prompt_id": [f"p{i}" for i in range(rows)],
        "prompt_text": [PROMPTS[i % len(PROMPTS)] for i in range(rows)],
        "response": [response(rng, SEEN, v) for v in verdicts],
        "reward": [1.0 if v == "good" else 0.0 for v in verdicts],
    })


def rollouts(responses_by_prompt: list[list[str]]) -> pa.Table:
    ids, prompts, texts = [], [], []
    for p, responses in enumerate(responses_by_prompt):
        for text in responses:
            ids.append(f"q{p}")
            prompts.append(PROMPTS[p % len(PROMPTS)])
            texts.append(text)
    return pa.table({"prompt_id": ids, "prompt_text": prompts, "response": texts})


def trained(rows: int = 200, seed: int = 0, **options) -> EnsembleQuery:
    selector = make_query("ensemble", QuerySettings(seed=seed), **options)
    selector.observe(labelled_table(rows))
    return selector


@pytest.fixture(scope="module")
def selector() -> EnsembleQuery:
    return trained()


def in_distribution_groups(count: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[response(rng, SEEN, v) for v in ("good", "bad", "good", "bad")] for _ in range(count)]


def chosen_per_group(table: pa.Table, mask: np.ndarray) -> list[int]:
    return [int(mask[rows].sum()) for rows in prompt_groups(table)]


# ---------------------------------------------------------------- the reward model


def test_heads_learn_the_labels_and_disagree_more_on_unseen_words(selector):
    labelled = labelled_table(200)
    mean_prediction = selector.model.predict(labelled).mean(axis=1)
    assert np.abs(mean_prediction - labelled.column("reward").to_numpy()).mean() < 0.15

    rng = np.random.default_rng(7)
    like_training = rollouts([[response(rng, SEEN, v) for v in ("good", "bad") * 10]])
    unseen = rollouts([[response(rng, UNSEEN) for _ in range(20)]])
    assert selector.disagreement(unseen).mean() > 2 * selector.disagreement(like_training).mean()
    # New responses like the labelled ones are scored by their verdict word.
    fresh = selector.model.predict(like_training).mean(axis=1)
    assert fresh[0::2].mean() - fresh[1::2].mean() > 0.6


def test_pair_disagreement_is_the_std_over_heads_of_the_reward_gap(selector):
    table = rollouts(in_distribution_groups(2, seed=3))
    predictions = selector.model.predict(table)
    matrices = selector.pair_disagreements(table)
    for rows, matrix in zip(prompt_groups(table), matrices):
        assert matrix.shape == (4, 4)
        assert np.allclose(np.diag(matrix), 0.0)
        assert matrix[0, 2] == pytest.approx(np.std(predictions[rows[0]] - predictions[rows[2]]))


def test_same_settings_and_labels_give_the_same_model_and_leave_global_rngs_alone():
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first, second = trained(60), trained(60)
    table = rollouts(in_distribution_groups(3, seed=1))
    assert np.array_equal(first.model.predict(table), second.model.predict(table))
    assert not np.allclose(first.model.predict(table), trained(60, seed=1).model.predict(table))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])


def test_observing_rounds_in_order_equals_observing_them_at_once():
    # What a resumed run does: each completed round's labels, in order, must rebuild the same model.
    labelled = labelled_table(80)
    by_round = make_query("ensemble")
    by_round.observe(labelled.slice(0, 50))
    by_round.observe(labelled.slice(50))
    at_once = make_query("ensemble")
    at_once.observe(labelled)
    table = rollouts(in_distribution_groups(2, seed=5))
    assert np.array_equal(by_round.model.predict(table), at_once.model.predict(table))


def test_refit_every_keeps_the_last_fit_until_its_turn_and_then_fits_the_whole_buffer():
    labelled = labelled_table(90)
    rounds = [labelled.slice(0, 30), labelled.slice(30, 30), labelled.slice(60)]
    lagging = make_query("ensemble", refit_every=2)
    every_round = make_query("ensemble")
    table = rollouts(in_distribution_groups(2, seed=6))
    every_round.observe(rounds[0])
    lagging.observe(rounds[0])  # the first round that adds labels always fits
    assert np.array_equal(lagging.model.predict(table), every_round.model.predict(table))
    first_fit = lagging.model.predict(table)
    every_round.observe(rounds[1])
    lagging.observe(rounds[1])  # not its turn: the buffer grows, the model stays
    assert lagging.model.rows == 60 and lagging.model.fitted_rows == 30 and lagging.summary()["fitted_rows"] == 30
    assert np.array_equal(lagging.model.predict(table), first_fit)
    assert not np.allclose(every_round.model.predict(table), first_fit)
    every_round.observe(rounds[2])
    lagging.observe(rounds[2])  # its turn: a fit of all 90 rows, the same as refitting every round
    assert lagging.model.fitted_rows == 90
    assert np.array_equal(lagging.model.predict(table), every_round.model.predict(table))


def test_non_finite_rewards_are_skipped():
    labelled = labelled_table(40)
    rewards = labelled.column("reward").to_numpy().copy()
    rewards[[3, 7, 11]] = [np.nan, np.inf, -np.inf]
    noisy = labelled.set_column(labelled.column_names.index("reward"), "reward", pa.array(rewards))
    finite = labelled.filter(pa.array(np.isfinite(rewards)))
    with_noise, clean = make_query("ensemble"), make_query("ensemble")
    with_noise.observe(noisy)
    clean.observe(finite)
    assert with_noise.model.rows == 37
    table = rollouts(in_distribution_groups(2, seed=2))
    assert np.array_equal(with_noise.model.predict(table), clean.model.predict(table))
    assert np.isfinite(with_noise.model.predict(table)).all()


def test_observing_only_non_finite_rewards_leaves_no_model():
    selector = make_query("ensemble")
    selector.observe(pa.table({"prompt_text": ["a"], "response": ["b"], "reward": [np.nan]}))
    assert selector.model.rows == 0 and selector.fit_seconds == 0.0


@pytest.mark.parametrize("field, value", [
    ("heads", 1), ("heads", True), ("heads", 2.5), ("hidden", -1), ("hashed_features", 0),
    ("anchor", 0.0), ("anchor", -1e-3), ("anchor", float("inf")), ("rule", "greedy"), ("refit_every", 0),
])
def test_option_errors_name_the_key(field, value):
    from actors.contracts import InputError
    from round_standins import config_with

    with pytest.raises(InputError, match=rf"labelling\.query\.{field}"):
        config_with("labelling.query=ensemble", f"labelling.query.{field}={value!r}")


def test_an_ensemble_without_options_takes_the_defaults():
    assert make_query("ensemble").ensemble == EnsembleOptions(kind="ensemble")


def test_a_linear_ensemble_learns_too():
    selector = trained(hidden=0)
    labelled = labelled_table(200)
    error = np.abs(selector.model.predict(labelled).mean(axis=1) - labelled.column("reward").to_numpy()).mean()
    assert error < 0.15


# ---------------------------------------------------------------- the mask


def test_the_out_of_distribution_prompt_is_labelled_first(selector):
    rng = np.random.default_rng(11)
    groups = in_distribution_groups(5, seed=11)
    groups.insert(3, [response(rng, UNSEEN) for _ in range(4)])
    table = rollouts(groups)
    mask = selector.select(table, 2, np.random.default_rng(0))
    assert chosen_per_group(table, mask) == [0, 0, 0, 2, 0, 0]
    summary = selector.summary()
    assert summary["rows"] == 200 and summary["heads"] == 8
    assert summary["score_labelled"] > summary["score_unlabelled"] and summary["ranked_by"] == "ensemble disagreement"


def test_mask_labels_the_most_disputed_pairs_in_order_under_the_budget(selector):
    rng = np.random.default_rng(4)
    # Prompts from all-seen to all-unseen words: disagreement spread out, no ties.
    groups = [[response(rng, SEEN[: 12 - 2 * level] + UNSEEN[: 2 * level]) for _ in range(4)] for level in range(6)]
    table = rollouts(groups)
    best = []
    for matrix in selector.pair_disagreements(table):
        upper = np.triu(matrix, k=1)
        best.append((upper.max(), set(np.unravel_index(np.argmax(upper), upper.shape))))
    ranking = np.argsort([-value for value, _ in best])
    for budget in (7, 4, 3):
        mask = selector.select(table, budget, np.random.default_rng(0))
        per_group = chosen_per_group(table, mask)
        assert mask.sum() == 2 * (budget // 2) <= budget
        assert {g for g, count in enumerate(per_group) if count} == set(ranking[: budget // 2].tolist())
        for g, rows in enumerate(prompt_groups(table)):
            if per_group[g]:
                assert per_group[g] == 2 and set(np.flatnonzero(mask[rows]).tolist()) == best[g][1]


def test_no_budget_labels_a_pair_of_every_prompt_and_never_a_lone_response(selector):
    groups = in_distribution_groups(3, seed=8) + [["apple good"]]
    table = rollouts(groups)
    assert chosen_per_group(table, selector.select(table, None, np.random.default_rng(0))) == [2, 2, 2, 0]
    assert not selector.select(table, 1, np.random.default_rng(0)).any()


def test_round_zero_draws_random_pairs_with_the_same_labels():
    table = rollouts(in_distribution_groups(30, seed=9))
    fresh = make_query("ensemble")
    mask = fresh.select(table, 21, np.random.default_rng(5))
    assert mask.sum() == 20
    assert sorted(set(chosen_per_group(table, mask))) == [0, 2]
    assert np.array_equal(mask, fresh.select(table, 21, np.random.default_rng(5)))
    assert not np.array_equal(mask, fresh.select(table, 21, np.random.default_rng(6)))
    assert fresh.summary()["score_labelled"] is None and fresh.row_scores is None


def test_thompson_pairs_a_heads_favourite_with_its_most_disputed_partner():
    rng = np.random.default_rng(12)
    # Two clear "good" responses and two of unseen words: the widest gap is between the unseen
    # two, but a head's favourite is a "good" one, which thompson must pair.
    group = ["apple good river good", "stone good cloud good"] + [response(rng, UNSEEN) for _ in range(2)]
    table = rollouts([group, *in_distribution_groups(2, seed=13)])
    greedy = trained().select(table, None, np.random.default_rng(0))
    thompson_selector = trained(rule="thompson")
    thompson = thompson_selector.select(table, None, np.random.default_rng(0))
    assert chosen_per_group(table, thompson) == [2, 2, 2]
    assert greedy[2:4].all() and not greedy[:2].any()
    assert thompson[:2].sum() == 1 and thompson[2:4].sum() == 1
    assert not np.array_equal(greedy, thompson)
    budgeted = thompson_selector.select(table, 5, np.random.default_rng(0))
    assert budgeted.sum() == 4 and sorted(chosen_per_group(table, budgeted)) == [0, 2, 2]


def test_eets_pairs_one_heads_favourite_with_the_next_dissenting_heads():
    from policies.query.ensemble import _eets_pair, pair_disagreement

    # Three responses, four heads: heads 0 and 1 prefer response 0, head 2 prefers 1, head 3 prefers 2.
    predictions = np.array([[3.0, 3.0, 0.0, 0.0],
                            [1.0, 1.0, 3.0, 1.0],
                            [0.0, 0.0, 1.0, 3.0]])
    disagreement = pair_disagreement(predictions)
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        order = np.random.default_rng(seed).permutation(4)
        i, j, value = _eets_pair(predictions, disagreement, rng)
        first = int(np.argmax(predictions[:, order[0]]))
        dissent = next(int(np.argmax(predictions[:, h])) for h in order[1:] if np.argmax(predictions[:, h]) != first)
        assert (i, j) == (first, dissent) and value == disagreement[i, j]
        seen.add((i, j))
    assert len(seen) >= 4  # the head order is drawn: different seeds pair different responses
    # All heads agree on response 1: its partner is drawn among the others, never itself.
    agreeing = np.array([[0.0, 0.0], [2.0, 3.0], [1.0, 0.5]])
    partners = {_eets_pair(agreeing, pair_disagreement(agreeing), np.random.default_rng(s))[1] for s in range(20)}
    assert partners == {0, 2}


def test_the_eets_rule_is_selectable_and_labels_one_pair_per_prompt():
    table = rollouts(in_distribution_groups(6, seed=21))
    mask = trained(rule="eets").select(table, 8, np.random.default_rng(3))
    assert mask.sum() == 8 and sorted(set(chosen_per_group(table, mask))) == [0, 2]
