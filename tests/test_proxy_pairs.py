"""benchmarks/proxy_pairs.py: what 2 labels at the proxy's extremes buy, on groups with a known answer, and read
from a run folder's Parquet tables."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

from proxy_pairs import group_stats as stats_of, run_groups, summarise  # noqa: E402


def group_stats(rewards, proxy):
    return stats_of(rewards, proxy, np.random.default_rng(0))


def test_a_proxy_that_finds_the_extremes_buys_the_whole_groups_pair():
    stats = group_stats(np.array([0.0, 1.0, 0.5, 0.5]), np.array([0.1, 0.9, 0.4, 0.6]))
    assert stats["all_pair"] and stats["extremes_pair"] and stats["extremes_agree"]
    assert stats["extremes_gap_share"] == 1.0
    # Random two of four: 5 of the 6 pairs differ; their mean gap is (1 + .5 + .5 + .5 + .5 + 0) / 6 of 1.
    assert stats["random_pair"] == pytest.approx(5 / 6) and stats["random_gap_share"] == pytest.approx(0.5)


def test_a_proxy_that_picks_tied_or_reversed_responses_is_seen():
    tied = group_stats(np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.9, 0.8, 0.1, 0.2]))
    assert tied["extremes_pair"] and tied["extremes_agree"]
    reversed_ = group_stats(np.array([1.0, 0.0, 0.5]), np.array([0.0, 1.0, 0.5]))
    assert reversed_["extremes_pair"] and not reversed_["extremes_agree"]
    same = group_stats(np.array([1.0, 1.0, 0.0]), np.array([0.9, 0.1, 0.5]))
    assert not same["extremes_pair"] and same["extremes_agree"] is None and same["extremes_gap_share"] == 0.0
    summary = summarise([tied, reversed_, same])
    assert summary["extremes_pair_share"] == pytest.approx(2 / 3) and summary["extremes_agree_share"] == 0.5
    # A proxy that ties on a group says nothing there: it is counted apart.
    blind = group_stats(np.array([0.0, 1.0]), np.array([0.5, 0.5]))
    assert not blind["proxy_differs"]
    # The selector labels two distinct responses there, so a pair can still come of it; it orders nothing.
    assert blind["extremes_pair"] and blind["extremes_agree"] is None
    summary = summarise([tied, reversed_, same, blind])
    assert summary["proxy_differs_share"] == 0.75 and summary["proxy_differs_all_pair_share"] == 1.0
    assert summary["proxy_differs_extremes_pair_share"] == pytest.approx(2 / 3)


def test_only_whole_groups_with_finite_scores_are_read(tmp_path):
    folder = tmp_path / "round_0000"
    folder.mkdir()
    ids = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    pq.write_table(pa.table({"prompt_id": ids}), folder / "rollouts.parquet")
    # a: all 4 labelled; b: 2 of 4 labelled (a partial group); c: a NaN proxy score.
    scored = pa.table({"prompt_id": ["a"] * 4 + ["b"] * 2 + ["c"] * 4,
                       "reward": [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.2],
                       "reward_proxy": [0.0, 1.0, 0.2, 0.1, 0.3, 0.2, np.nan, 1.0, 0.5, 0.2]})
    pq.write_table(scored, folder / "scored.parquet")
    groups = run_groups(tmp_path, "reward_proxy")
    assert len(groups) == 1 and groups[0]["extremes_gap_share"] == 1.0
