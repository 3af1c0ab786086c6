"""Every key a round writes into metrics.json, eval.json and summary.json is a `Metric` member
(actors/contracts.py): a new key must be defined there, once, before anything writes or reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.contracts import COST_KEYS, CUMULATIVE_PREFIX, EVAL_METRICS, Metric

KEYS = {member.value for member in Metric}
# A summary.json row: a round's Metric keys, plus the running cost totals (cluster/costs.py).
SUMMARY_ROW_KEYS = KEYS | {f"{CUMULATIVE_PREFIX}{key}" for key in COST_KEYS}


def test_every_member_is_its_own_key_and_a_plain_string_in_json():
    # An Enum makes a second member with a taken value an alias of the first: that would be one key, two names.
    assert len(Metric.__members__) == len(Metric)
    assert json.dumps({Metric.PAIRS_TRAINED: 1, Metric.ROUND: 0}, sort_keys=True) == '{"pairs_trained": 1, "round": 0}'
    assert f"{Metric.HELDOUT_REWARD_MEAN}" == "heldout_reward_mean"


def unknown_keys(run_dir: Path) -> dict[str, list[str]]:
    """Per file of the run, the top-level keys that are not Metric members (empty: all are)."""
    found: dict[str, list[str]] = {}
    rounds = sorted(run_dir.glob("round_*"))
    assert rounds, f"no round in {run_dir}"
    for folder in rounds:
        metrics = json.loads((folder / "metrics.json").read_text())
        evaluation = json.loads((folder / "eval.json").read_text())
        found[f"{folder.name}/metrics.json"] = sorted(set(metrics) - KEYS)
        found[f"{folder.name}/eval.json"] = sorted(set(evaluation) - set(EVAL_METRICS))
        # eval.json is the evaluation merged into the round's metrics: the same numbers under the same keys.
        assert {key: metrics[key] for key in evaluation} == evaluation, folder.name
    summary = json.loads((run_dir / "summary.json").read_text())
    for row in summary["rounds"]:
        found[f"summary.json round {row[Metric.ROUND]}"] = sorted(set(row) - SUMMARY_ROW_KEYS)
    return {name: keys for name, keys in found.items() if keys}


def test_a_round_of_the_drivers_runner_writes_only_metric_keys(tmp_path):
    """The driver's real round code (RoundRunner, in-process stand-in actors), with the evaluation before
    training, a proxy and an eval reward on, so round 0 writes its optional keys too."""
    from round_standins import LABELLER, PROXY, config_with, run_one_round

    from cluster.run_store import RunStore

    exact = "{kind: programmatic, name: builtin_task_exact, role: eval}"
    config = config_with(f"scoring.rewards=[{LABELLER}, {PROXY}, {exact}]", "labelling.query=random",
                         "labelling.labels_per_round=24", "eval.before_training=true")
    _, metrics, folder = run_one_round(config, tmp_path)
    RunStore(tmp_path / "run").write_summary()
    assert unknown_keys(tmp_path / "run") == {}
    assert {Metric.HELDOUT_BEFORE_MEAN, Metric.HELDOUT_BEFORE_COLUMNS, Metric.LABELLING, Metric.COSTS} <= set(metrics)


@pytest.mark.slow
def test_the_quickstart_run_writes_only_metric_keys(quickstart_run):
    """The shared two-round CLI run (tests/conftest.py): Ray actors, DID entropy and gradient norms on."""
    run_dir, _ = quickstart_run
    assert unknown_keys(run_dir) == {}
    metrics = json.loads((run_dir / "round_0001" / "metrics.json").read_text())
    assert {Metric.DID_ENTROPY, Metric.PVAR_GRADNORM_SPEARMAN, Metric.NODES, Metric.PHASE_TIMELINE} <= set(metrics)
