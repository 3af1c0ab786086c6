"""The `pvar_learned` query selector (policies/query/learned.py): a ridge reward model on frozen text features,
refitted on every label observed, learns what the labels turn on, and prompt groups are labelled by the PVar of
its predictions. Hand-made texts (hashed features, fast), one check of the packaged MiniLM encoder offline, and
two rounds of the driver on the stand-in actors (tests/round_standins.py). No Ray."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

from actors.contracts import LABELLED_COLUMN, InputError, Metric
from policies.query import QuerySettings, make_query, prompt_groups
from policies.query.learned import LearnedPVarQuery
from policies.query.ranked import group_codes, grouped_pvar_or_last
from round_standins import LABELLER, config_with, runner_for

FILLER = ("apple", "river", "stone", "cloud", "tiger", "piano", "maple", "ocean", "candle", "forest", "silver",
          "garden")
PROMPTS = ("write about nature", "describe an object", "tell a short story")


def response(rng: np.random.Generator, goods: int) -> str:
    """Five filler words with `goods` times the word "good" among them: the only thing the reward reads."""
    words = list(rng.choice(FILLER, size=5))
    for _ in range(goods):
        words.insert(int(rng.integers(len(words) + 1)), "good")
    return " ".join(words)


def labelled_table(rows: int, seed: int = 0, reward=None) -> pa.Table:
    """Reward = how many times "good" is in the response (0 to 3)."""
    rng = np.random.default_rng(seed)
    goods = rng.integers(0, 4, size=rows)
    return pa.table({
        "prompt_id": [f"p{i}" for i in range(rows)],
        "prompt_text": [PROMPTS[i % len(PROMPTS)] for i in range(rows)],
        "response": [response(rng, int(g)) for g in goods],
        "reward": goods.astype(np.float64) if reward is None else np.full(rows, float(reward)),
    })


def rollouts(goods_by_prompt: list[list[int]], seed: int = 1) -> pa.Table:
    """Prompt q<p>'s responses with the given counts of "good", in order."""
    rng = np.random.default_rng(seed)
    ids, prompts, texts = [], [], []
    for p, goods in enumerate(goods_by_prompt):
        for count in goods:
            ids.append(f"q{p}")
            prompts.append(PROMPTS[p % len(PROMPTS)])
            texts.append(response(rng, count))
    return pa.table({"prompt_id": ids, "prompt_text": prompts, "response": texts})


def trained(rows: int = 200, **options) -> LearnedPVarQuery:
    selector = make_query("pvar_learned", QuerySettings(), **{"features": "hashed", **options})
    selector.observe(labelled_table(rows))
    return selector


@pytest.fixture(scope="module")
def selector() -> LearnedPVarQuery:
    return trained()


def labelled_per_group(table: pa.Table, mask: np.ndarray) -> list[int]:
    return [int(mask[rows].sum()) for rows in prompt_groups(table)]


# ---------------------------------------------------------------- before any label


def test_round_zero_ranks_groups_at_random_with_no_signal():
    table = rollouts([[0, 1, 2, 3]] * 6)
    draws = []
    for seed in range(6):
        fresh = make_query("pvar_learned", features="hashed")
        mask = fresh.select(table, 8, np.random.default_rng(seed))
        assert mask.sum() == 8 and fresh.response_signal is None
        assert fresh.summary()["ranked_by"] == "random" and fresh.summary()["buffer_rows"] == 0
        draws.append(tuple(labelled_per_group(table, mask)))
    # Two whole groups of 4 each time, not always the same two.
    assert all(sorted(d) == [0, 0, 0, 0, 4, 4] for d in draws) and len(set(draws)) > 1


# ---------------------------------------------------------------- the reward model


def test_predictions_rank_held_out_responses_by_what_the_labels_turn_on(selector):
    held_out = labelled_table(120, seed=5)
    predictions = selector.predict(held_out)
    assert spearmanr(predictions, held_out.column("reward").to_numpy()).statistic > 0.8
    # In the labels' units: the mean reward of 0 to 3 goods is 1.5.
    assert abs(predictions.mean() - 1.5) < 0.3
    summary = selector.summary()
    assert summary["buffer_rows"] == 200 and summary["alpha"] in (0.1, 1.0, 10.0, 100.0)


def test_the_same_buffer_gives_the_same_predictions_whether_observed_at_once_or_by_round():
    held_out = labelled_table(40, seed=9)
    first, second = trained(), trained()
    np.testing.assert_array_equal(first.predict(held_out), second.predict(held_out))
    by_round = make_query("pvar_learned", features="hashed")
    whole = labelled_table(200)
    by_round.observe(whole.slice(0, 120))
    by_round.observe(whole.slice(120))
    np.testing.assert_allclose(by_round.predict(held_out), first.predict(held_out), rtol=1e-10, atol=1e-12)


def test_a_constant_reward_predicts_its_value_and_still_selects():
    selector = make_query("pvar_learned", features="hashed")
    selector.observe(labelled_table(30, reward=0.5))
    table = rollouts([[0, 3, 0, 3], [1, 1, 2, 2]])
    np.testing.assert_array_equal(selector.predict(table), np.full(8, 0.5))
    mask = selector.select(table, 4, np.random.default_rng(0))
    assert mask.sum() == 4 and selector.summary()["ranked_by"] == "learned" and selector.summary()["alpha"] is None


def test_non_finite_rewards_are_skipped_and_only_them_leaves_no_model():
    selector = make_query("pvar_learned", features="hashed")
    selector.observe(pa.table({"prompt_text": ["a"], "response": ["b"], "reward": [np.nan]}))
    assert selector.model.rows == 0
    selector.select(rollouts([[0, 3]]), 2, np.random.default_rng(0))
    assert selector.summary()["ranked_by"] == "random"
    with_nan = labelled_table(50).append_column("x", pa.array(np.zeros(50)))
    rewards = with_nan.column("reward").to_numpy().copy()
    rewards[::7] = np.inf
    selector.observe(with_nan.set_column(with_nan.column_names.index("reward"), "reward", pa.array(rewards)))
    assert selector.model.rows == 50 - len(range(0, 50, 7))


# ---------------------------------------------------------------- the mask


def test_groups_are_labelled_by_the_pvar_of_the_predictions(selector):
    # Predicted spreads: "wide" 0 vs 3 goods, "narrow" 1 vs 2, "tied" all alike.
    table = rollouts([[1, 1, 1, 1], [1, 2, 1, 2], [0, 3, 0, 3]])
    mask = selector.select(table, 4, np.random.default_rng(0))
    assert labelled_per_group(table, mask) == [0, 0, 4]
    predictions = selector.predict(table)
    np.testing.assert_array_equal(selector.response_signal, predictions)
    codes = group_codes(prompt_groups(table), table.num_rows)
    pvar = grouped_pvar_or_last(codes, predictions[:, None], selector.options.tau, 3)
    np.testing.assert_allclose(selector.row_scores, pvar[codes])
    assert pvar[2] > pvar[1] > pvar[0]
    assert labelled_per_group(table, selector.select(table, 8, np.random.default_rng(0))) == [0, 4, 4]
    summary = selector.summary()
    assert summary["ranked_by"] == "learned" and summary["score_labelled"] > summary["score_unlabelled"]


def test_responses_per_group_labels_the_predicted_extremes():
    selector = trained(responses_per_group=2)
    table = rollouts([[1, 0, 3, 2, 1], [2, 1, 2, 1, 2]])
    mask = selector.select(table, 4, np.random.default_rng(0))
    predictions = selector.response_signal
    for rows in prompt_groups(table):
        chosen = rows[mask[rows]]
        extremes = {int(rows[np.argmax(predictions[rows])]), int(rows[np.argmin(predictions[rows])])}
        assert set(chosen.tolist()) == extremes
    # The first group's extremes are its responses with 0 and 3 goods.
    assert np.flatnonzero(mask[:5]).tolist() == [1, 2]


# ---------------------------------------------------------------- the packaged encoder


def test_minilm_features_load_offline_and_learn(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    selector = make_query("pvar_learned")
    assert selector.options.features == "minilm"
    labelled = labelled_table(60)
    selector.observe(labelled)
    features = selector.model._features(labelled.slice(0, 3))
    assert features.shape == (3, 3 * 384) and np.isfinite(features).all()
    # Unit-length embeddings: the product block sums to the prompt-response cosine.
    np.testing.assert_allclose(np.linalg.norm(features[:, :384], axis=1), 1.0, rtol=1e-5)
    held_out = labelled_table(40, seed=3)
    assert spearmanr(selector.predict(held_out), held_out.column("reward").to_numpy()).statistic > 0.8


# ---------------------------------------------------------------- the config and the driver


def test_the_config_takes_its_options_and_names_an_unknown_one():
    from cluster.settings import query_settings

    config = config_with("labelling.query={kind: pvar_learned, features: hashed}", "labelling.labels_per_round=8")
    selector = make_query(config.labelling.query, query_settings(config))
    assert isinstance(selector, LearnedPVarQuery) and selector.options.features == "hashed"
    assert selector.learns_from_labels and selector.scores_responses
    with pytest.raises(InputError, match=r"labelling\.query\.heads"):
        config_with("labelling.query={kind: pvar_learned, heads: 3}")
    with pytest.raises(InputError, match=r"labelling\.query\.alphas"):
        config_with("labelling.query={kind: pvar_learned, alphas: [1.0, 0.0]}")
    with pytest.raises(InputError, match=r"labelling\.query\.features"):
        config_with("labelling.query={kind: pvar_learned, features: bert}")


def test_two_driver_rounds_learn_from_round_zeros_labels_and_count_a_proxy_call_per_response(tmp_path):
    config = config_with(f"scoring.rewards=[{LABELLER}]", "labelling.query={kind: pvar_learned, features: hashed}",
                         "labelling.labels_per_round=16")
    runner = runner_for(config, tmp_path)
    runner.run_round(0)
    runner.run_round(1)
    folders = [tmp_path / "run" / f"round_000{index}" for index in (0, 1)]
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in folders]
    assert metrics[0][Metric.LABELLING]["selector"]["ranked_by"] == "random"
    assert metrics[1][Metric.LABELLING]["selector"]["ranked_by"] == "learned"
    # Round 1 chose with the model fitted on round 0's 16 labels; observe timed the refit.
    assert metrics[1][Metric.LABELLING]["selector"]["buffer_rows"] == 16
    assert "observe" in metrics[1][Metric.LABELLING]["seconds"]
    # The driver measures the predictions' agreement with the labels they were made before: none in round 0.
    assert "signal" not in metrics[0][Metric.LABELLING]["proxy_quality"]
    assert metrics[1][Metric.LABELLING]["proxy_quality"]["signal"]["rows"] == 16
    for folder, round_metrics in zip(folders, metrics):
        rollouts_table = pq.read_table(folder / "rollouts.parquet")
        costs = round_metrics[Metric.COSTS]
        assert costs["proxy_scores"] == rollouts_table.num_rows == 48
        assert costs["labels"] == sum(rollouts_table.column(LABELLED_COLUMN).to_pylist()) == 16
    # A resumed driver relearns from the completed rounds' labels: the model of the run it resumes.
    resumed = runner_for(config, tmp_path)
    table = pq.read_table(folders[1] / "scored.parquet")
    np.testing.assert_array_equal(resumed.query.predict(table), runner.query.predict(table))
