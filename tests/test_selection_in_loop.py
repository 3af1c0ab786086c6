"""Model-side selection inside the real round loop: bpo and implicit PVar through the CLI.

Each run is two rounds of the shrunk quickstart on its own embedded Ray cluster; the features are
computed by the generator actors on the current policy.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from policies.pvar import grouped_preference_variance
from policies.grouping import group_rewards
from tests.cli_helpers import QUICKSTART, SMALL_RUN, run_cli

pytestmark = [pytest.mark.slow]


def run_two_rounds(tmp_path, *overrides: str):
    run_dir = tmp_path / "run"
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(run_dir), "run.rounds=2", *SMALL_RUN, *overrides)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


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
        assert metrics["selection"]["policy"] == "bpo"
        assert metrics["phase_seconds"]["select"] > 0


def test_implicit_pvar_uses_the_trained_policy_after_round_zero(tmp_path):
    run_dir = run_two_rounds(tmp_path, "selection.pvar_source=implicit", "selection.top_fraction=0.25")
    pvar_by_round = []
    for index in (0, 1):
        scored = pq.read_table(run_dir / f"round_{index:04d}" / "scored.parquet")
        stats = pq.read_table(run_dir / f"round_{index:04d}" / "prompt_stats.parquet")
        grouped = group_rewards(scored)
        reward_pvar = grouped_preference_variance(grouped.codes, grouped.rewards, 1.0, grouped.n_prompts)
        order = [grouped.prompt_ids.index(p) for p in stats.column("prompt_id").to_pylist()]
        pvar_by_round.append((stats.column("pvar").to_numpy(), reward_pvar[order]))
    sources = [json.loads((run_dir / f"round_{i:04d}" / "metrics.json").read_text())["selection"]["pvar_source"]
               for i in (0, 1)]
    assert sources == ["reward", "implicit"]
    round0, round1 = pvar_by_round
    # Round 0: pi == pi_init, the implicit reward is 0 everywhere, so the reward form is used.
    assert np.allclose(round0[0], round0[1])
    # Round 1: the policy has moved; PVar now comes from its log-ratios, not from the rewards.
    assert not np.allclose(round1[0], round1[1]) and np.all(round1[0] >= 0) and np.any(round1[0] > 0)
