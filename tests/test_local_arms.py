"""The in-process harness (benchmarks/local_arms.py) runs the CLI's algorithm, and the label-efficiency
benchmark statistics the unported scripts still use (benchmarks/harness/legacy.py) say what they claim."""

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


# --- the benchmark's statistics ------------------------------------------------------------------


def curve(seed: int, labels: list[float], reward: list[float]) -> dict:
    return {"seed": seed, "labels": labels, "tokens": labels, "reward": reward, "exact": None,
            "pairs_trained": [1] * (len(labels) - 1), "tied_share": [0.0] * (len(labels) - 1),
            "selector": [None] * (len(labels) - 1), "wall_seconds": 1.0}


def test_first_reach_interpolates_and_says_never():
    from harness.legacy import first_reach, value_at

    assert first_reach([0, 10, 20], [0.1, 0.3, 0.5], 0.4) == pytest.approx(15.0)
    assert first_reach([0, 10, 20], [0.5, 0.3, 0.6], 0.4) == 0.0  # the start already reaches it
    assert first_reach([0, 10, 20], [0.1, 0.5, 0.2], 0.45) == pytest.approx(8.75)  # the first crossing counts
    assert first_reach([0, 10], [0.1, 0.2], 0.3) is None
    assert value_at([0, 10, 20], [0.0, 1.0, 3.0], 15) == pytest.approx(2.0)
    assert value_at([0, 10], [0.0, 1.0], 11) is None


def test_labels_to_reach_and_the_difference_from_random():
    from harness.legacy import labels_to_reach, versus_random

    rng = np.random.default_rng(0)
    passive = [curve(s, [0, 100, 200], [0.2, 0.3, 0.4 + 0.01 * s]) for s in range(3)]  # target: 0.41
    fast = [curve(s, [0, 25, 50], [0.2, 0.35, 0.5 + 0.01 * s]) for s in range(3)]
    slow = [curve(s, [0, 25, 50], [0.2, 0.21, 0.22]) for s in range(3)]
    reach = labels_to_reach(fast, passive, rng)
    # Mean curve 0.2, 0.35, 0.51: 0.41 is reached 0.06 / 0.16 of the way from 25 to 50 labels.
    assert reach["labels"] == pytest.approx(25 + 25 * 0.06 / 0.16)
    assert reach["share_of_passive"] == pytest.approx(reach["labels"] / 200)
    assert reach["reached_share"] == 1.0 and reach["low"] <= reach["labels"] <= reach["high"]
    never = labels_to_reach(slow, passive, rng)
    assert never["labels"] is None and never["reached_share"] == 0.0 and never["high"] is None

    versus = versus_random(fast, slow)
    assert versus["labels"] == 50 and versus["n"] == 3
    assert versus["mean"] == pytest.approx(0.51 - 0.22) and versus["low"] > 0
    # An arm that spent fewer labels is compared where it stopped, random's curve interpolated there.
    early = [curve(s, [0, 20, 40], [0.2, 0.3, 0.4]) for s in range(3)]
    versus = versus_random(early, slow)
    assert versus["labels"] == 40 and versus["mean"] == pytest.approx(0.4 - (0.21 + 0.01 * 15 / 25))


def test_no_label_target_when_passive_does_not_improve():
    from harness.stats import fmt_reach, reach

    passive = [curve(s, [0, 100, 200], [0.3, 0.29, 0.28]) for s in range(3)]
    active = [curve(s, [0, 25, 50], [0.3, 0.31, 0.32]) for s in range(3)]
    found = reach(active, passive, "labels", "reward", resamples=50)
    assert found["defined"] is False and found["target"] == pytest.approx(0.28) and fmt_reach(found) == "no target"


def test_statistics_read_another_curve_by_value():
    # benchmarks/ifeval_arms.py reads IFEval accuracies, not "reward": the same numbers under another key agree.
    from harness.legacy import labels_to_reach, versus_random

    passive = [curve(s, [0, 100, 200], [0.2, 0.3, 0.4 + 0.01 * s]) for s in range(3)]
    fast = [curve(s, [0, 25, 50], [0.2, 0.35, 0.5 + 0.01 * s]) for s in range(3)]
    slow = [curve(s, [0, 25, 50], [0.2, 0.21, 0.22]) for s in range(3)]
    renamed = lambda runs: [{**r, "accuracy": r["reward"], "reward": [0.0] * len(r["reward"])} for r in runs]  # noqa: E731
    reach = labels_to_reach(fast, passive, np.random.default_rng(0))
    again = labels_to_reach(renamed(fast), renamed(passive), np.random.default_rng(0), value="accuracy")
    assert again == reach
    assert versus_random(renamed(fast), renamed(slow), value="accuracy") == versus_random(fast, slow)


def test_ifeval_arms_keep_as_many_prompts_and_compare_each_arm_with_its_baseline():
    from ifeval_arms import CONFIG, QUICK, headline, sizes

    from policies.candidates import kept_prompt_count

    for quick in ([], QUICK):
        info = sizes(CONFIG, quick)
        assert kept_prompt_count(info["lean_prompts"], info["lean_top_fraction"]) == info["kept_prompts"]
    assert sizes(CONFIG, [])["passive_labels_per_round"] == 128 and sizes(CONFIG, [])["lean_prompts"] == 24

    def run(arm: str, seed: int, labels: list[float], tokens: list[float], loose: list[float]) -> dict:
        return {"arm": arm, "seed": seed, "labels": labels, "tokens": tokens, "instruction_loose": loose,
                "prompt_strict": [v / 2 for v in loose], "pairs_trained": [16] * (len(loose) - 1),
                "phase_seconds_total": 1.0, "scheduling": [{"skipped": 1, "skipped_unvisited": 1}] * (len(loose) - 1)}

    runs = []
    for s in range(2):
        runs += [run("passive", s, [0, 128, 256], [0, 100, 200], [0.3, 0.35, 0.4 + 0.01 * s]),
                 run("random", s, [0, 64, 128], [0, 100, 200], [0.3, 0.32, 0.34]),
                 run("pvar_proxy", s, [0, 64, 128], [0, 100, 200], [0.3, 0.36, 0.42]),
                 run("history_nn_lean", s, [0, 96, 192], [0, 75, 150], [0.3, 0.35, 0.41])]
    result = headline(runs)
    assert result["pvar_proxy"]["minus_baseline"]["baseline"] == "random"
    assert result["pvar_proxy"]["minus_baseline"]["instruction_loose"]["mean"] == pytest.approx(0.42 - 0.34)
    assert result["pvar_proxy"]["reach_passive"]["cost"] == "labels"
    assert result["pvar_proxy"]["reach_passive"]["labels"] < 128  # passive's final 0.405 is reached before the end
    lean = result["history_nn_lean"]
    assert lean["minus_baseline"]["baseline"] == "passive" and lean["reach_passive"]["cost"] == "tokens"
    # Compared at lean's final 150 tokens, where passive's curves are halfway from 0.35 to their finals (mean 0.405).
    assert lean["minus_baseline"]["instruction_loose"]["mean"] == pytest.approx(0.41 - (0.35 + (0.405 - 0.35) / 2))
    assert "minus_baseline" not in result["random"] and "minus_baseline" not in result["passive"]
    assert lean["instruction_loose_change"]["mean"] == pytest.approx(0.11)
    assert lean["scheduling"]["skipped_unvisited"] == 1
