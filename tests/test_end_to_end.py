"""The whole loop through the real CLI: rounds on disk, resume, and SIGKILL of the driver mid-round."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from actors.contracts import TRAINING_STATE_DIR, Metric

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_round_run(quickstart_run):
    return quickstart_run


def test_every_round_leaves_its_artifacts_and_a_summary(two_round_run):
    run_dir, result = two_round_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row[Metric.ROUND] for row in summary["rounds"]] == [0, 1]
    for row in summary["rounds"]:
        assert row[Metric.PAIRS_TRAINED] > 0
        assert 0.0 <= row[Metric.HELDOUT_REWARD_MEAN] <= 1.0
        assert row[Metric.HELDOUT_REWARD_STD] >= 0.0
        assert {"generate", "score", "select", "train", "sync", "eval"} <= set(row[Metric.PHASE_SECONDS])
    for index in (0, 1):
        folder = run_dir / f"round_{index:04d}"
        assert (folder / "COMPLETE").exists()
        rollouts = pq.read_table(folder / "rollouts.parquet")
        # Every prompt of the round comes back with k samples.
        assert rollouts.num_rows == 16 * 4
        assert set(rollouts.column("weights_version").to_pylist()) == {index}
        selected = pq.read_table(folder / "selected.parquet")
        assert selected.num_rows > 0
        assert (folder / "checkpoint" / "model.safetensors").exists()
    assert "round 2/2" in result.stderr
    assert (run_dir / "report.html").exists()  # refreshed after every round (reporting.report)
    config_text = (run_dir / "config.yaml").read_text()
    assert "pair_budget: 8" in config_text


def test_rounds_record_the_training_dynamics(two_round_run):
    run_dir, _ = two_round_run
    for index in (0, 1):
        folder = run_dir / f"round_{index:04d}"
        metrics = json.loads((folder / "metrics.json").read_text())
        # DID entropy of the policy against the initial model on held-out prompts (16 x 8 samples).
        assert metrics[Metric.DID_PROMPTS] == 16 and metrics[Metric.DID_ENTROPY_SAMPLES] == 16 * 8
        assert metrics[Metric.DID_ENTROPY] > 0
        learner = metrics[Metric.LEARNER]
        assert len(learner["step_history"]) == learner["steps"]
        assert learner["delta_chosen_logps"] == pytest.approx(learner["chosen_logps_end"] - learner["chosen_logps_start"])
        # Gradient norms exist exactly for the selected prompts, and rise with PVar.
        stats = pq.read_table(folder / "prompt_stats.parquet").to_pandas()
        measured = stats["grad_norm"].notna()
        assert (measured == stats["selected"]).all() and (stats.loc[measured, "grad_norm"] > 0).all()
        assert metrics[Metric.PVAR_GRADNORM_SPEARMAN] > 0.5


def test_checkpoint_loads_with_from_pretrained(two_round_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = two_round_run[0] / "round_0001" / "checkpoint"
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert model.num_parameters() > 0 and tokenizer.eos_token_id is not None


def test_sigkill_mid_round_then_same_command_resumes(killed_and_resumed_run):
    """A copy of the shared two-round run is continued to four rounds with run.max_lag 1, its driver
    SIGKILLed during round 2 (and twice more later), and the same command run again (tests/conftest.py): it
    resumes after round 1, rounds 0 and 1 byte-identical (but for the pruned optimizer state), and each of
    rounds 2 and 3 is prepared on the weights one version behind its learner (docs/overlap.md)."""
    from cli_helpers import without_pruned

    run = killed_and_resumed_run
    assert not run.round_2_after_kill
    assert run.after_kill == run.before
    assert "resuming" in run.restarts[0] and "after round 1" in run.restarts[0]
    # Rounds 0 and 1 are byte-identical but for AdamW's state, pruned once two later rounds kept theirs
    # (learner.optimizer_state_rounds 2), and the markers that now list it as pruned.
    for index in (0, 1):
        assert not [path for path in run.after_resume[index] if TRAINING_STATE_DIR in path]  # pruned
        assert without_pruned(run.after_resume[index]) == without_pruned(run.before[index])
    assert not list(run.run_dir.glob(".round_*.partial"))
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert [row[Metric.ROUND] for row in summary["rounds"]] == [0, 1, 2, 3]
    # Under max_lag 1 each round samples from the weights one version behind the learner that trains it: round 2
    # from round 0's (it is prepared while round 1 trains, in the uninterrupted run and so in the resumed one:
    # cluster/resume_weights.py), round 3 from round 1's, never from the initial model.
    for index, lag in ((2, 1), (3, 1)):
        folder = run.run_dir / f"round_{index:04d}"
        rollouts = pq.read_table(folder / "rollouts.parquet")
        assert set(rollouts.column("weights_version").to_pylist()) == {index - 1}
        assert set(pq.read_table(folder / "selected.parquet").column("lag").to_pylist()) == {lag}
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics[Metric.MAX_LAG], metrics[Metric.LAG]) == (1, lag)


def test_nan_rewards_are_dropped_counted_and_the_run_continues(bpo_run_with_nan_rewards):
    run_dir, result = bpo_run_with_nan_rewards  # a user reward module that returns NaN for every third response
    metrics = json.loads((run_dir / "round_0000" / "metrics.json").read_text())
    rollouts = pq.read_table(run_dir / "round_0000" / "rollouts.parquet")
    scored = pq.read_table(run_dir / "round_0000" / "scored.parquet")
    dropped = rollouts.num_rows - scored.num_rows
    assert dropped > 0
    assert metrics[Metric.INVALID_REWARDS]["total"] == dropped
    assert metrics[Metric.INVALID_REWARDS]["reward_builtin_task_with_nans"] == dropped
    assert all(v == v for v in scored.column("reward").to_pylist())  # no NaN reached selection
    assert "dropped" in result.stderr and "NaN" in result.stderr
