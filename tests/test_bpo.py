"""BPO (docs/bpo.md): breadth clustering, gradient-feature informativeness, allocation, policy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies import make_policy
from actors.contracts import PROMPT_STATS_SCHEMA
from policies.breadth import breadth_representatives
from policies.gradient_clustering import allot_pairs, pair_informativeness, pick_within_prompts


def blobs(centres: np.ndarray, per_blob: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = np.repeat(centres, per_blob, axis=0) + spread * rng.normal(size=(len(centres) * per_blob, centres.shape[1]))
    return points, np.repeat(np.arange(len(centres)), per_blob)


def test_breadth_keeps_one_representative_per_natural_cluster():
    centres = np.eye(4, 8) * 10
    points, truth = blobs(centres, per_blob=6, spread=0.3, seed=0)
    result = breadth_representatives(points, np.ones(len(points), bool), n_keep=4, seed=0)
    assert sorted(truth[result.representatives]) == [0, 1, 2, 3]
    # The clustering of every prompt matches the blobs (up to relabelling).
    for blob in range(4):
        assert len(set(result.cluster[truth == blob])) == 1
    # Each representative is the member nearest its cluster's mean direction.
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    for rep in result.representatives:
        members = np.flatnonzero(result.cluster == result.cluster[rep])
        centre = unit[members].mean(axis=0)
        assert rep == members[np.argmin(np.linalg.norm(unit[members] - centre, axis=1))]


def test_breadth_never_picks_an_ineligible_prompt_and_handles_few_prompts():
    points, _ = blobs(np.eye(3, 5) * 5, per_blob=4, spread=0.2, seed=1)
    eligible = np.ones(len(points), bool)
    eligible[[0, 4, 8]] = False
    result = breadth_representatives(points, eligible, n_keep=3, seed=0)
    assert eligible[result.representatives].all() and len(result.representatives) == 3
    assert breadth_representatives(points, np.zeros(len(points), bool), 3, 0).representatives.size == 0
    # Asking for more representatives than distinct prompts keeps each distinct prompt once.
    same = np.tile([[1.0, 0.0], [0.0, 1.0]], (3, 1))
    assert len(breadth_representatives(same, np.ones(6, bool), n_keep=5, seed=0).representatives) == 2


def test_informativeness_penalises_redundant_directions():
    rng = np.random.default_rng(0)
    crowd = np.array([1.0, 0.0, 0.0]) + 0.01 * rng.normal(size=(10, 3))
    loner = np.array([[0.0, 0.0, 1.0]])
    zero = np.zeros((1, 3))
    features = np.vstack([crowd, loner, zero])
    result = pair_informativeness(features, n_clusters=2, seed=0)
    assert result.score[10] == pytest.approx(1.0)  # a singleton: its own direction, nothing repeated
    assert np.all(result.score[:10] < 0.2)  # ten near copies share one direction
    assert result.score[11] == 0.0 and result.cluster[11] == -1  # no gradient, no information
    # Scale does not matter: features are compared by direction.
    assert np.allclose(pair_informativeness(features * 7.5, 2, 0).score, result.score)


@settings(max_examples=200, deadline=None)
# Found by hypothesis: the zero-weight first prompt won a tie of zero remainders.
@example(prompts=[(0.0, 1), (1.0, 1), (1.0, 3)], budget=4, allocation="proportional")
@given(
    st.lists(st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 6)), min_size=1, max_size=12),
    st.integers(0, 60),
    st.sampled_from(["proportional", "uniform"]),
)
def test_allot_pairs_fills_the_budget_within_caps(prompts, budget, allocation):
    weights = np.array([w for w, _ in prompts])
    available = np.array([a for _, a in prompts])
    counts = allot_pairs(weights, available, budget, allocation)
    assert counts.sum() == min(budget, available.sum())
    assert np.all(counts <= available) and np.all(counts >= 0)
    if allocation == "proportional" and budget <= available[weights > 0].sum():
        assert counts[weights == 0].sum() == 0  # zero-informativeness prompts only absorb what others cannot


def test_allot_pairs_is_proportional_when_no_cap_binds():
    counts = allot_pairs(np.array([1.0, 2.0, 5.0]), np.array([100, 100, 100]), 16)
    assert counts.tolist() == [2, 4, 10]
    assert allot_pairs(np.array([1.0, 2.0, 5.0]), np.array([100, 100, 100]), 15, "uniform").tolist() == [5, 5, 5]
    # A capped prompt's excess goes to the others in proportion.
    assert allot_pairs(np.array([8.0, 1.0, 1.0]), np.array([2, 10, 10]), 10).tolist() == [2, 4, 4]


def test_pick_within_prompts_takes_the_most_informative_first():
    codes = np.array([0, 0, 0, 1, 1, 2])
    score = np.array([0.1, 0.9, 0.5, 0.3, 0.2, 1.0])
    taken = pick_within_prompts(codes, score, np.array([2, 1, 0]), np.random.default_rng(0))
    assert taken.tolist() == [1, 2, 3]
    # Sampling draws in proportion to informativeness: the heavy pair is taken far more often.
    counts = np.zeros(3)
    for seed in range(400):
        counts[pick_within_prompts(np.zeros(3, int), np.array([0.1, 0.1, 2.0]), np.array([1]), np.random.default_rng(seed), "sample")] += 1
    assert counts[2] / counts.sum() == pytest.approx(2.0 / 2.2, abs=0.05)


class FixedProbe:
    """A model probe with given embeddings and a pair feature per (prompt, chosen, rejected) rewards."""

    def __init__(self, embeddings: dict[str, np.ndarray], pair_feature):
        self.embeddings, self.pair_feature, self.calls = embeddings, pair_feature, []

    def response_logratios(self, scored):
        raise AssertionError("bpo does not use log-ratios")

    def prompt_embeddings(self, prompts):
        self.calls.append(("prompt_embeddings", prompts.num_rows))
        return np.stack([self.embeddings[p] for p in prompts.column("prompt_id").to_pylist()])

    def pair_gradient_features(self, pairs):
        self.calls.append(("pair_gradient_features", pairs.num_rows))
        return np.stack([self.pair_feature(row) for row in pairs.to_pylist()])


def scored_table(rewards: dict[str, list[float]]) -> pa.Table:
    rows = [
        {"prompt_id": pid, "sample_index": i, "prompt_text": f"text {pid}", "prompt_token_ids": [1, len(pid)],
         "response_token_ids": [2, i], "response": f"{pid}-{i}", "reward": r}
        for pid, values in rewards.items() for i, r in enumerate(values)
    ]
    return pa.Table.from_pylist(rows)


def test_bpo_keeps_representatives_and_spends_the_budget_by_informativeness():
    # Two topics (embedding directions); within a topic every prompt has 4 responses = 6 pairs.
    rewards = {f"{topic}{i}": [0.0, 1.0, 2.0, 3.0] for topic in "ab" for i in range(4)}
    embeddings = {pid: (np.array([1.0, 0.0]) if pid[0] == "a" else np.array([0.0, 1.0])) + 0.01 * int(pid[1])
                  for pid in rewards}

    def feature(row):
        # Prompt a*'s pairs all point one way (redundant); b*'s pairs each point somewhere new.
        if row["prompt_id"][0] == "a":
            return np.array([1.0, 0.0, 0.0, 0.0])
        direction = np.zeros(4)
        direction[1 + int(row["chosen_reward"] + row["rejected_reward"]) % 3] = 1.0
        return direction + 0.1 * row["chosen_reward"]

    probe = FixedProbe(embeddings, feature)
    selection = make_policy("bpo", pairs_per_prompt=4, depth_clusters=3).select(scored_table(rewards), 8, np.random.default_rng(0), probe)
    stats = {row["prompt_id"]: row for row in selection.prompt_stats.to_pylist()}
    assert selection.prompt_stats.schema == PROMPT_STATS_SCHEMA
    assert selection.pairs.num_rows == 8
    kept = sorted(p for p, row in stats.items() if row["selected"])
    assert len(kept) == 2 and {p[0] for p in kept} == {"a", "b"}  # one representative per topic
    b_rep = next(p for p in kept if p[0] == "b")
    a_rep = next(p for p in kept if p[0] == "a")
    assert stats[b_rep]["pairs_selected"] > stats[a_rep]["pairs_selected"]  # new directions get the depth
    assert stats[b_rep]["informativeness"] > stats[a_rep]["informativeness"]
    assert all(row["cluster"] is not None for row in stats.values())
    assert all(row["informativeness"] is None for p, row in stats.items() if p not in kept)
    # Features were asked once each: all prompts embedded, only the representatives' pairs differentiated.
    assert probe.calls == [("prompt_embeddings", 8), ("pair_gradient_features", 12)]


def test_bpo_needs_the_model_probe_and_handles_empty_rounds():
    with pytest.raises(ValueError, match="needs the model probe"):
        make_policy("bpo").select(scored_table({"a": [0.0, 1.0]}), 4, np.random.default_rng(0))
    empty = make_policy("bpo").select(scored_table({"a": [0.0, 1.0]}).slice(0, 0), 4, np.random.default_rng(0))
    assert empty.pairs.num_rows == 0
    ties = make_policy("bpo").select(scored_table({"a": [1.0, 1.0]}), 4, np.random.default_rng(0),
                                     FixedProbe({"a": np.ones(2)}, lambda row: np.ones(4)))
    assert ties.pairs.num_rows == 0 and ties.prompt_stats.num_rows == 1
