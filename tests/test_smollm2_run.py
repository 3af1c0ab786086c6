"""configs/smollm2-cpu.yaml end to end through the CLI: the real SmolLM2 policy and the MiniLM reward.

Two rounds, shrunk to fewer prompts and tokens than the config (same components, same code path),
so the test stays within a few minutes on 2 cores. The model comes from the default prepared-model
cache (built on first use, then reused by every run and test).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import REPO, run_cli

from cluster.data.instruction_prompts import instruction_prompts

CONFIG = REPO / "configs" / "smollm2-cpu.yaml"
SHRINK = [
    "data.prompts_per_round=4",
    "selection.pair_budget=2",
    "learner.batch_size=2",
    "learner.micro_batch_size=null",
    "generation.max_new_tokens=16",
    "eval.num_prompts=4",
    # DID samples the policy and the initial model on held-out prompts: 16 x 8 samples of SmolLM2 by
    # default, the bulk of a round here. Two of two keep the phase in the run.
    "diagnostics.did_prompts=2",
    "diagnostics.did_samples_per_prompt=2",
    "diagnostics.report=false",
    "ray.include_dashboard=false",
]


@pytest.mark.slow
def test_two_rounds_of_smollm2_with_the_similarity_reward(tmp_path):
    from transformers import AutoConfig

    run_dir = tmp_path / "run"
    result = run_cli("run", str(CONFIG), "--run-dir", str(run_dir), *SHRINK, timeout=540)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "run complete: 2 rounds" in result.stdout

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["round"] for row in summary["rounds"]] == [0, 1]
    for index in (0, 1):
        round_dir = run_dir / f"round_{index:04d}"
        assert (round_dir / "COMPLETE").exists()
        for name in ("rollouts", "scored", "selected", "prompt_stats"):
            assert (round_dir / f"{name}.parquet").exists(), name
        scored = pq.read_table(round_dir / "scored.parquet")
        # The reference rode along from the prompt set to every scored rollout.
        assert {"reference", "answer", "reward_similarity", "reward_contains_answer"} <= set(scored.column_names)
        similarity = scored.column("reward_similarity").to_numpy()
        assert np.all(np.isfinite(similarity)) and np.all(np.abs(similarity) <= 1 + 1e-6)
        np.testing.assert_allclose(
            scored.column("reward").to_numpy(),
            similarity + 0.5 * scored.column("reward_contains_answer").to_numpy(),
        )
        metrics = json.loads((round_dir / "metrics.json").read_text())
        assert metrics["pairs_trained"] > 0 and np.isfinite(metrics["learner"]["loss"])
        assert np.isfinite(metrics["heldout_reward_mean"])
        checkpoint = AutoConfig.from_pretrained(round_dir / "checkpoint")
        assert checkpoint.hidden_size == 576 and checkpoint.num_hidden_layers == 30  # SmolLM2-135M
    # Training prompts come from the instruction set's train split only.
    used = set(pq.read_table(run_dir / "round_0000" / "rollouts.parquet").column("prompt_id").to_pylist())
    assert used <= set(instruction_prompts("train").column("prompt_id").to_pylist())
