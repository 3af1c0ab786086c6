"""The ranked and interactive query selectors: pvar_proxy, pvar_implicit, dynamic_filter; unit tests on
hand-made tables, then the driver's real round on the stand-in actors (tests/round_standins.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.contracts import LABELLED_COLUMN, QUERY_SCORE_COLUMN, Metric
from cluster.labelling import LabelPlan, label_round
from cluster.settings import query_settings
from policies.query import QuerySettings, make_query
from policies.query.groups import spread_exceeds
from round_standins import LABELLER, PROXY, SEEN, config_with, run_one_round

PROXY_COLUMN = "reward_proxy"


def table(proxy_by_prompt: dict[str, list[float]]) -> pa.Table:
    """One row per response, grouped by prompt, with a proxy column."""
    ids = [pid for pid, scores in proxy_by_prompt.items() for _ in scores]
    return pa.table({"prompt_id": ids,
                     "sample_index": [j for scores in proxy_by_prompt.values() for j in range(len(scores))],
                     PROXY_COLUMN: [s for scores in proxy_by_prompt.values() for s in scores]})


def labelled_prompts(rows: pa.Table, mask: np.ndarray) -> list[str]:
    return sorted(set(np.asarray(rows.column("prompt_id").to_pylist())[mask].tolist()))


SETTINGS = QuerySettings(proxy_columns=(PROXY_COLUMN,))


def test_pvar_proxy_labels_the_groups_whose_proxy_scores_disagree_most():
    rows = table({"tied": [1, 1, 1, 1], "split": [0, 1, 0, 1], "slight": [0, 0, 0, 0.2], "one_off": [0, 0, 0, 1]})
    selector = make_query("pvar_proxy", SETTINGS, tau=0.25)
    mask = selector.select(rows, 8, np.random.default_rng(0))
    # PVar: a 2-2 split beats 3-1, which beats a small gap; a tie has none.
    assert labelled_prompts(rows, mask) == ["one_off", "split"]
    assert selector.row_scores[:4].tolist() == [0.0] * 4 and selector.row_scores[4] > selector.row_scores[12] > 0
    summary = selector.summary()
    assert summary["ranked_by"] == "proxy" and summary["score_labelled"] > summary["score_unlabelled"]


def test_pvar_proxy_ranks_a_group_with_a_non_finite_proxy_last_and_needs_a_proxy():
    rows = table({"nan": [0, np.nan, 1, 0], "tied": [1, 1, 1, 1]})
    mask = make_query("pvar_proxy", SETTINGS, tau=0.25).select(rows, 4, np.random.default_rng(0))
    assert labelled_prompts(rows, mask) == ["tied"]
    with pytest.raises(ValueError, match="role: proxy"):
        make_query("pvar_proxy", QuerySettings())


class LogRatios:
    """A model probe whose log-ratios are given per row."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)
        self.calls = 0

    def response_logratios(self, rows):
        self.calls += 1
        return self.values


def test_pvar_implicit_ranks_by_the_implicit_reward_and_falls_back_while_it_is_zero():
    rows = table({"a": [0, 0, 0, 0], "b": [0, 1, 0, 1]})
    selector = make_query("pvar_implicit", QuerySettings(proxy_columns=(PROXY_COLUMN,)), implicit_beta=1.0,
                          initial="proxy")
    # The implicit reward disagrees within "a" only: it wins although the proxy ties there.
    probe = LogRatios([0, 5, -5, 0, 0.1, 0.1, 0.1, 0.1])
    assert labelled_prompts(rows, selector.select(rows, 4, np.random.default_rng(0), probe)) == ["a"]
    assert selector.source == "implicit" and probe.calls == 1
    # Round 0: every log-ratio is 0, so the proxies rank.
    zero = LogRatios(np.zeros(8))
    assert labelled_prompts(rows, selector.select(rows, 4, np.random.default_rng(0), zero)) == ["b"]
    assert selector.source == "proxy"
    # By default round 0 uses no proxy, even where there is one: a random order.
    proxy_free = make_query("pvar_implicit", QuerySettings(proxy_columns=(PROXY_COLUMN,)), implicit_beta=1.0)
    picks = {tuple(labelled_prompts(rows, proxy_free.select(rows, 4, np.random.default_rng(s), zero)))
             for s in range(8)}
    assert picks == {("a",), ("b",)} and proxy_free.source == "random"
    # Without proxies the fallback is a random order; without a probe there is nothing to rank by.
    plain = make_query("pvar_implicit", QuerySettings(), initial="proxy")
    picks = {tuple(labelled_prompts(rows, plain.select(rows, 4, np.random.default_rng(s), zero))) for s in range(8)}
    assert picks == {("a",), ("b",)} and plain.source == "random"
    with pytest.raises(ValueError, match="model probe"):
        plain.select(rows, 4, np.random.default_rng(0))


def labelled_rows(rows: pa.Table, mask: np.ndarray) -> dict[str, list[int]]:
    """Prompt -> the sample indices labelled."""
    out: dict[str, list[int]] = {}
    for pid, j, chosen in zip(rows.column("prompt_id").to_pylist(), rows.column("sample_index").to_pylist(), mask):
        if chosen:
            out.setdefault(pid, []).append(j)
    return out


def test_responses_per_group_labels_the_proxys_extremes_of_the_highest_pvar_groups():
    rows = table({"tied": [1, 1, 1, 1], "split": [0.2, 0.9, 0.5, 0.1], "one_off": [0, 0, 0.8, 0]})
    # A budget of 4 buys 2 groups of 2: the best and the worst response by the proxy of each.
    mask = make_query("pvar_proxy", SETTINGS, tau=0.25, responses_per_group=2).select(rows, 4, np.random.default_rng(0))
    picked = labelled_rows(rows, mask)
    assert sorted(picked) == ["one_off", "split"] and picked["split"] == [1, 3]
    assert 2 in picked["one_off"] and len(picked["one_off"]) == 2
    # Three: the top two and the bottom one.
    split = table({"split": [0.2, 0.9, 0.5, 0.1]})
    three = make_query("pvar_proxy", SETTINGS, responses_per_group=3)
    assert labelled_rows(split, three.select(split, None, np.random.default_rng(0))) == {"split": [1, 2, 3]}


def test_a_non_finite_score_is_never_an_extreme():
    from policies.query.groups import extremes

    # NaN and inf count as the finite scores' mean (0.475): the extremes are the 1.0 and the 0.0.
    for bad in (np.nan, np.inf, -np.inf):
        picked = extremes(np.array([bad, 1.0, 0.0, 0.5, 0.4]), 2, np.random.default_rng(0))
        assert picked.tolist() == [1, 2]
    # No finite score at all: any two, drawn at random.
    assert extremes(np.full(4, np.nan), 2, np.random.default_rng(0)).size == 2


def test_responses_per_group_follows_the_implicit_reward_and_random_draws_a_subset():
    rows = table({"a": [0, 0, 0, 0], "b": [0, 0, 0, 0]})
    probe = LogRatios([3, -1, 0, 0.5, 0, 0, 0, 0.1])
    implicit = make_query("pvar_implicit", implicit_beta=1.0, responses_per_group=2)
    assert labelled_rows(rows, implicit.select(rows, 2, np.random.default_rng(0), probe)) == {"a": [0, 1]}
    # random: 2 of each group, different ones under different seeds; the budget buys whole trimmed groups.
    random_pairs = make_query("random", responses_per_group=2)
    draws = [labelled_rows(rows, random_pairs.select(rows, 4, np.random.default_rng(s))) for s in range(12)]
    assert all(sorted(d) == ["a", "b"] and all(len(v) == 2 for v in d.values()) for d in draws)
    assert len({tuple(d["a"]) for d in draws}) > 2
    # Unset, random labels whole groups as before.
    whole = make_query("random").select(rows, 4, np.random.default_rng(0))
    assert [len(v) for v in labelled_rows(rows, whole).values()] == [4]


def test_responses_per_group_is_refused_by_selectors_that_do_not_read_it():
    from actors.contracts import InputError

    for query in ("ensemble", "dynamic_filter", "passive"):
        with pytest.raises(InputError, match=r"unknown key 'labelling.query.responses_per_group'"):
            config_with(f"labelling.query={query}", "labelling.query.responses_per_group=2")
    config = config_with("labelling.query=random", "labelling.labels_per_round=8",
                         "labelling.query.responses_per_group=2")
    assert make_query(config.labelling.query, query_settings(config)).options.responses_per_group == 2


def test_spread_exceeds_counts_finite_rewards_only():
    assert spread_exceeds(np.array([0.0, 0.3]), 0.2)
    assert not spread_exceeds(np.array([0.0, 0.2]), 0.2)
    assert not spread_exceeds(np.array([0.0, np.nan]), 0.0)


def drive(selector, rows: pa.Table, rewards: dict[str, list[float]], budget, seed=0):
    """label_round with a labeller that reads each row's reward from `rewards`, recording what it saw."""
    seen = []

    def score(batch: pa.Table, role: str) -> pa.Table:
        seen.append(batch)
        values = [rewards[p][j] for p, j in zip(batch.column("prompt_id").to_pylist(),
                                                batch.column("sample_index").to_pylist())]
        return batch.append_column("reward", pa.array(values, pa.float64()))

    plan = LabelPlan("dynamic_filter", budget, 1, 0)
    written, scored, metrics = label_round(rows, score, selector, plan, np.random.default_rng(seed))
    return written, scored, metrics, seen


def test_dynamic_filter_refills_until_enough_groups_do_not_tie():
    rewards = {f"t{i}": [1, 1, 1, 1] for i in range(6)} | {f"s{i}": [0, 1, 1, 0] for i in range(3)}
    rows = table({p: [0] * 4 for p in rewards})
    selector = make_query("dynamic_filter", QuerySettings(target_groups=2))
    written, scored, metrics, seen = drive(selector, rows, rewards, None)
    kept = [p for p in labelled_prompts(written, written.column(LABELLED_COLUMN).to_numpy()) if p.startswith("s")]
    # It stops once 2 non-tied groups are labelled; every tied group it met cost its labels all the same.
    assert len(kept) == 2 and selector.kept_groups == 2
    assert metrics["responses_labelled"] == 4 * (selector.kept_groups + selector.tied_groups) == scored.num_rows
    # The first batch is as many groups as the target, each refill as many as are still missing.
    assert seen[0].num_rows == 8 and all(batch.num_rows in (4, 8) for batch in seen[1:])
    assert metrics["selector"] == {"groups_kept": 2, "groups_tied": selector.tied_groups, "target_groups": 2}
    # scored.parquet is in the rollouts' row order, whatever order the batches came in.
    order = [rows.column("prompt_id").to_pylist().index(p) for p in scored.column("prompt_id").to_pylist()]
    assert order == sorted(order)


def test_dynamic_filter_stops_at_the_budget_and_treats_near_ties_as_ties():
    rewards = {f"n{i}": [0.5, 0.52, 0.5, 0.5] for i in range(5)} | {"s": [0, 1, 0, 1]}
    rows = table({p: [0] * 4 for p in rewards})
    loose = make_query("dynamic_filter", QuerySettings(target_groups=3, tie_tolerance=0.05))
    written, scored, metrics, _ = drive(loose, rows, rewards, 10)
    assert metrics["responses_labelled"] <= 10 and loose.kept_groups <= 1
    strict = make_query("dynamic_filter", QuerySettings(target_groups=6, tie_tolerance=0.0))
    drive(strict, rows, rewards, None)
    assert strict.kept_groups == 6 and strict.tied_groups == 0


def test_ranked_query_in_the_driver_round_writes_what_it_ranked_by(tmp_path):
    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]", "labelling.query=pvar_proxy",
                         "labelling.labels_per_round=16", "selection.policy.top_fraction=1.0")
    runner, metrics, folder = run_one_round(config, tmp_path)
    rollouts = pq.read_table(folder / "rollouts.parquet")
    mask = rollouts.column(LABELLED_COLUMN).to_numpy()
    scores = rollouts.column(QUERY_SCORE_COLUMN).to_numpy()
    assert mask.sum() == 16 == len([s for s in SEEN if not s[0].startswith("h")])
    # Whole groups of the highest proxy PVar were labelled.
    assert scores[mask].min() >= scores[~mask].max()
    assert metrics[Metric.LABELLING]["selector"]["ranked_by"] == "proxy"


def test_responses_per_group_in_the_driver_round_labels_each_groups_proxy_extremes(tmp_path):
    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}]", "labelling.query=pvar_proxy",
                         "labelling.labels_per_round=16", "labelling.query.responses_per_group=2",
                         "selection.policy.top_fraction=1.0")
    runner, metrics, folder = run_one_round(config, tmp_path)
    rollouts = pq.read_table(folder / "rollouts.parquet")
    mask = rollouts.column(LABELLED_COLUMN).to_numpy()
    ids = np.asarray(rollouts.column("prompt_id").to_pylist())
    proxy = rollouts.column("reward_builtin_task_proxy").to_numpy()
    labelled = sorted(set(ids[mask]))
    assert len(labelled) == 8 and metrics[Metric.COSTS]["labels"] == 16
    for pid in labelled:
        rows = ids == pid
        chosen = np.sort(proxy[rows & mask])
        assert chosen.tolist() == [proxy[rows].min(), proxy[rows].max()]


def test_dynamic_filter_in_the_driver_round(tmp_path):
    config = config_with(f"scoring.rewards=[{LABELLER}]", "labelling.query=dynamic_filter", "selection.pair_budget=3")
    runner, metrics, folder = run_one_round(config, tmp_path)
    # target_groups defaults to the pair budget; the stand-in generator never ties, so 3 groups suffice.
    assert metrics[Metric.LABELLING]["selector"]["groups_kept"] == 3 and metrics[Metric.COSTS]["labels"] == 12


def test_ensemble_in_the_driver_round_labels_pairs_and_learns_from_every_round(tmp_path):
    from round_standins import runner_for

    config = config_with(f"scoring.rewards=[{LABELLER}]", "labelling.query=ensemble", "labelling.labels_per_round=10")
    runner = runner_for(config, tmp_path)
    first = runner.run_round(0)
    second = runner.run_round(1)
    # Round 0 has no model: random pairs; round 1 ranks by the heads fitted on round 0's 10 labels.
    assert first[Metric.LABELLING]["selector"]["ranked_by"] == "random (no label yet)"
    assert second[Metric.LABELLING]["selector"]["ranked_by"] == "ensemble disagreement"
    assert second[Metric.LABELLING]["selector"]["rows"] == 10 and "observe" in second[Metric.LABELLING]["seconds"]
    rollouts = pq.read_table(tmp_path / "run" / "round_0001" / "rollouts.parquet")
    counts = np.unique(np.asarray(rollouts.column("prompt_id").to_pylist())[rollouts.column(LABELLED_COLUMN).to_numpy()],
                       return_counts=True)[1]
    assert counts.tolist() == [2] * 5 and QUERY_SCORE_COLUMN in rollouts.column_names
    # A resumed driver relearns from the completed rounds' labels: the same model as the one that ran.
    resumed = runner_for(config, tmp_path)
    table = pq.read_table(tmp_path / "run" / "round_0001" / "scored.parquet")
    np.testing.assert_allclose(resumed.query.model.predict(table), runner.query.model.predict(table))
