"""The in-process harness (benchmarks/local_arms.py) runs the CLI's algorithm (the benchmarks' statistics are
tests/test_benchmark_harness.py's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

from cli_helpers import QUICKSTART, SMALL_RUN  # noqa: E402

from actors.contracts import Metric  # noqa: E402

TABLES = ("rollouts", "scored", "selected", "prompt_stats")
# Model features the CLI computes on sharded tables and the harness on one table: the same up to float order.
FEATURE_COLUMNS = {"grad_norm"}
# Learner metrics of round 0 (one optimizer step per epoch, see below): equal up to float summation order.
LEARNER_KEYS = ("loss", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps", "ref_chosen_logps",
                "ref_rejected_logps", "grad_norm", "chosen_logps_end", "rejected_logps_end", "loss_end")


def assert_same_table(expected, actual, name: str) -> None:
    """Column by column, NaN equal to NaN (a prompt without a gradient norm has NaN in both)."""
    import pyarrow as pa

    assert expected.schema.equals(actual.schema), name
    for column in expected.column_names:
        if pa.types.is_floating(expected.schema.field(column).type):
            values = [table.column(column).to_numpy(zero_copy_only=False) for table in (expected, actual)]
            rtol = 1e-6 if column in FEATURE_COLUMNS else 0.0
            np.testing.assert_allclose(values[1], values[0], rtol=rtol, atol=0.0, err_msg=f"{name}.{column}")
        else:
            assert expected.column(column).equals(actual.column(column)), f"{name}.{column}"


def without_seconds(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key != "seconds"}


def test_round_0_in_process_is_the_cli_round(quickstart_run, tmp_path, restore_torch_threads):
    """Round 0 of the shared CLI quickstart run (2 generator actors, 1 scorer actor, 2 DDP learner ranks,
    Ray) against round 0 run in-process from the same saved config.yaml.

    Sampling is seeded per batch from the batch's prompt ids (`batch_seed`), so the batching must match:
    the CLI's generator group cuts each prompts table into num_actors x chunks_per_actor = 4 slices
    (16 prompts: 4 slices of 4, each one batch at generation.batch_size 64), and the harness cuts the same
    slices (`_slices` of cluster/actor_groups.py) and generates them one after another. So the rollouts
    (prompt ids, response token ids, sampled log-probs), the proxy-free labels, the scored rewards, the
    pairs selected and the held-out reward of the starting policy are compared exactly.

    The learner: each of the CLI's 2 ranks shuffles its own shard of the pairs, one rank shuffles them
    all, so once a round has more pairs than one optimizer step the two take different steps. Round 0
    here has 8 pairs and learner.batch_size 8: one step per epoch holding every pair, the same update
    (4 pairs per rank with DDP's average, or 8 on one rank) up to float summation order. So the learner's
    metrics and the parameter checksum after the round are compared to 1e-5 relative; later rounds are not
    compared (their pairs come from samples of those slightly different weights).
    """
    from local_arms import LocalArms

    cli_dir = quickstart_run[0]
    arms = LocalArms(cli_dir / "config.yaml")
    run = arms.run(tmp_path / "run", rounds=1)
    cli_round, local_round = cli_dir / "round_0000", run.run_dir / "round_0000"

    for name in TABLES:
        assert_same_table(*(pq.read_table(folder / f"{name}.parquet") for folder in (cli_round, local_round)), name)
    assert pq.read_table(local_round / "rollouts.parquet").num_rows == 16 * 4

    cli, local = (json.loads((folder / "metrics.json").read_text()) for folder in (cli_round, local_round))
    assert local[Metric.HELDOUT_BEFORE_MEAN] == cli[Metric.HELDOUT_BEFORE_MEAN]
    for key in (Metric.PROMPTS, Metric.ROLLOUTS, Metric.TRAIN_REWARD_MEAN, Metric.ZERO_VARIANCE_SHARE,
                Metric.SELECTED_PROMPTS, Metric.SELECTION, Metric.INVALID_REWARDS):
        assert local[key] == cli[key], key
    assert without_seconds(local[Metric.COSTS]) == without_seconds(cli[Metric.COSTS])
    assert without_seconds(local[Metric.LABELLING]) == without_seconds(cli[Metric.LABELLING])

    cli_learner, local_learner = cli[Metric.LEARNER], local[Metric.LEARNER]
    assert cli_learner["pairs_trained"] <= 8 and cli_learner["world_size"] == 2  # the premise above
    assert local_learner["world_size"] == 1
    assert local_learner["steps"] == cli_learner["steps"]
    assert local_learner["pairs_trained"] == cli_learner["pairs_trained"]
    for key in LEARNER_KEYS:
        assert local_learner[key] == pytest.approx(cli_learner[key], rel=1e-5), key
    (checksum,) = local_learner["param_checksum_per_rank"]
    assert checksum == pytest.approx(cli_learner["param_checksum_per_rank"][0], rel=1e-6)


def test_every_run_starts_from_the_initial_model(tmp_path, restore_torch_threads):
    """Runs in one process share the loaded models only: a run repeated after another arm's run (other
    seed, other selector, trained weights left in the generator) is the same, round after round."""
    from local_arms import LocalArms

    small = [*SMALL_RUN, "run.rounds=2", "diagnostics.did_prompts=0", "diagnostics.gradient_norms=false"]
    arms = LocalArms(QUICKSTART, small)
    first = arms.run(tmp_path / "first", ["run.seed=3"])
    arms.run(tmp_path / "other", ["run.seed=4", "labelling.query=random", "labelling.labels_per_round=32",
                                  "scoring.rewards=[{kind: programmatic, name: builtin_task}, "
                                  "{kind: programmatic, name: builtin_task_proxy, role: proxy}]"])
    again = arms.run(tmp_path / "again", ["run.seed=3"])
    for index in (0, 1):
        folders = [run.run_dir / f"round_{index:04d}" for run in (first, again)]
        for name in TABLES:
            assert_same_table(*(pq.read_table(folder / f"{name}.parquet") for folder in folders), name)
        metrics = [json.loads((folder / "metrics.json").read_text()) for folder in folders]
        assert metrics[0][Metric.HELDOUT_REWARD_MEAN] == metrics[1][Metric.HELDOUT_REWARD_MEAN]
        assert metrics[0][Metric.LEARNER]["loss"] == metrics[1][Metric.LEARNER]["loss"]
    rows = [row["cumulative_labels"] for row in again.summary["rounds"]]
    assert rows == [16 * 4, 2 * 16 * 4]  # summary.json with the costs, as the CLI writes it
