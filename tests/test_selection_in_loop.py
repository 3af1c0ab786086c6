"""Model-side selection inside the real round loop: bpo and implicit PVar through the CLI.

Both read shared runs of the shrunk quickstart (tests/conftest.py), each on its own embedded Ray
cluster; the features are computed by the generator actors on the current policy.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from actors.contracts import Metric
from policies.pvar import grouped_preference_variance
from policies.grouping import group_rewards

pytestmark = [pytest.mark.slow]


def test_bpo_round_records_why_each_prompt_was_chosen(bpo_run_with_nan_rewards):
    run_dir = bpo_run_with_nan_rewards[0]  # two rounds, bpo with 2 pairs per prompt (tests/conftest.py)
    for index in (0, 1):
        round_dir = run_dir / f"round_{index:04d}"
        selected = pq.read_table(round_dir / "selected.parquet")
        scored = pq.read_table(round_dir / "scored.parquet")
        stats = pq.read_table(round_dir / "prompt_stats.parquet").to_pylist()
        assert 0 < selected.num_rows <= 8
        kept = [row for row in stats if row["selected"]]
        # ceil(8 / 2) representatives at most, every one with a cluster and an informativeness.
        assert 1 <= len(kept) <= 4
        assert all(row["informativeness"] is not None and row["informativeness"] > 0 for row in kept)
        assert all(row["cluster"] is not None for row in stats)
        assert sum(row["pairs_selected"] for row in stats) == selected.num_rows
        # The same statistics ride along on every response and pair row.
        for table in (scored, selected):
            assert {"pvar", "selected", "cluster", "informativeness", "pairs_selected"} <= set(table.column_names)
        assert set(selected.column("prompt_id").to_pylist()) == {row["prompt_id"] for row in kept}
        metrics = json.loads((round_dir / "metrics.json").read_text())
        assert metrics[Metric.SELECTION]["policy"] == "bpo"
        assert metrics[Metric.PHASE_SECONDS]["select"] > 0


def test_implicit_pvar_uses_the_trained_policy_once_it_has_moved(killed_and_resumed_run, quickstart_run):
    # Rounds 0-1 are the shared quickstart (reward PVar); round 2 was run with selection.policy.pvar_source=implicit
    # (tests/conftest.py). The round-0 fallback to the reward form, while every log-ratio is zero, is
    # checked in tests/test_pvar.py.
    run_dir = killed_and_resumed_run.run_dir
    scored = pq.read_table(run_dir / "round_0002" / "scored.parquet")
    stats = pq.read_table(run_dir / "round_0002" / "prompt_stats.parquet")
    grouped = group_rewards(scored)
    reward_pvar = grouped_preference_variance(grouped.codes, grouped.rewards, 1.0, grouped.n_prompts)
    order = [grouped.prompt_ids.index(p) for p in stats.column("prompt_id").to_pylist()]
    implicit, from_rewards = stats.column("pvar").to_numpy(), reward_pvar[order]
    sources = [json.loads((run_dir / f"round_{i:04d}" / "metrics.json").read_text())[Metric.SELECTION]["pvar_source"]
               for i in (0, 1, 2)]
    assert sources == ["reward", "reward", "implicit"]
    # The policy has moved; PVar now comes from its log-ratios, not from the rewards.
    assert not np.allclose(implicit, from_rewards) and np.all(implicit >= 0) and np.any(implicit > 0)
