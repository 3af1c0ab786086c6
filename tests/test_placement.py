"""Placement on a simulated multi-node cluster: each role lands on the nodes its labels name.

`ray.cluster_utils.Cluster` starts two real Ray nodes on this machine (separate raylets), labelled
as a rollout node and a training node. The real CLI joins that cluster with `ray.address`, runs a
round, and records every actor's node in metrics.json; the test compares them with the nodes the
config asked for. The colocated layout, the placement error and a lost node are checked on the same cluster.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from ray.cluster_utils import Cluster

from cli_helpers import QUICKSTART, SMALL_RUN, BackgroundRun, cli_env, cli_output, run_cli

from actors.contracts import Metric

pytestmark = [pytest.mark.ray, pytest.mark.slow]

POOL = "activedpo/pool"


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "labels": {POOL: "rollout"}, "include_dashboard": False},
    )
    train = cluster.add_node(num_cpus=2, labels={POOL: "train"})
    cluster.wait_for_nodes()
    try:
        yield cluster, {"rollout": cluster.head_node.node_id, "train": train.node_id}
    finally:
        cluster.shutdown()


def write_config(tmp_path, placement: dict, address: str) -> str:
    config = yaml.safe_load(QUICKSTART.read_text())
    config["placement"] = placement
    config["ray"] = {"address": address}
    path = tmp_path / "multinode.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_roles_land_on_the_labelled_nodes_and_a_round_completes(two_nodes, tmp_path):
    cluster, node = two_nodes
    placement = {
        "generators": {"label_selector": {POOL: "rollout"}},
        "scorers": {"label_selector": {POOL: "train"}},
        "learner": {"label_selector": {POOL: "train"}},
    }
    run_dir = tmp_path / "run"
    result = run_cli("run", write_config(tmp_path, placement, cluster.address), *SMALL_RUN, "run.rounds=1",
                     f"run.run_dir={run_dir}", "learner.num_cpus_per_worker=0.5", env=cli_env())
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "round_0000" / "metrics.json").read_text())
    assert metrics[Metric.NODES]["generators"] == [node["rollout"]] * 2
    assert metrics[Metric.NODES]["scorers"] == [node["train"]]
    # The learner's mailbox needs no resources and is pinned to the driver's node (the head here), never to a
    # pool's node whose loss would take it away.
    assert metrics[Metric.NODES]["learner_mailbox"] == [cluster.head_node.node_id]
    assert metrics[Metric.NODES]["learner"] == [node["train"]] * 2
    assert metrics[Metric.PAIRS_TRAINED] > 0 and (run_dir / "round_0000" / "COMPLETE").exists()


def test_colocated_scorers_share_their_generators_node(two_nodes, tmp_path):
    cluster, node = two_nodes
    placement = {"colocate": True, "generators": {"label_selector": {POOL: "train"}},
                 "learner": {"label_selector": {POOL: "rollout"}}}
    run_dir = tmp_path / "run"
    # One generator and its scorer make one bundle of 1.5 CPUs; the learner's two workers take the other node.
    result = run_cli("run", write_config(tmp_path, placement, cluster.address), *SMALL_RUN, "run.rounds=1",
                     f"run.run_dir={run_dir}", "generation.num_actors=1", "generation.num_cpus_per_actor=1",
                     "learner.num_cpus_per_worker=1", env=cli_env())
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "round_0000" / "metrics.json").read_text())
    assert metrics[Metric.NODES]["generators"] == [node["train"]]
    assert metrics[Metric.NODES]["scorers"] == [node["train"]]
    # The learner's mailbox needs no resources and is pinned to the driver's node (the head here), never to a
    # pool's node whose loss would take it away.
    assert metrics[Metric.NODES]["learner_mailbox"] == [cluster.head_node.node_id]
    assert metrics[Metric.NODES]["learner"] == [node["rollout"]] * 2


def test_a_placement_the_cluster_cannot_fit_fails_with_a_clear_error(two_nodes, tmp_path):
    cluster, _ = two_nodes
    placement = {"generators": {"label_selector": {POOL: "gpu"}}, "ready_timeout_s": 3}
    result = run_cli("run", write_config(tmp_path, placement, cluster.address), *SMALL_RUN, "run.rounds=1",
                     f"run.run_dir={tmp_path / 'run'}", env=cli_env())
    assert result.returncode == 2, result.stderr[-4000:]
    assert "placement" in result.stderr and f"{POOL}': 'gpu'" in result.stderr
    assert "Traceback" not in cli_output(result.stderr), result.stderr[-4000:]


def test_generators_of_a_lost_node_move_to_a_spare_and_with_none_left_the_run_stops_after_a_bounded_wait(
        two_nodes, tmp_path):
    """Two more nodes, both labelled for the generators; the one holding the generator is removed (its raylet and
    workers killed) during round 1's generation: Ray re-places the generator on the spare, the in-flight calls are
    retried there, and the round commits. The spare is then removed during round 2's generation, with no node
    left for the generator: the run stops within placement.ready_timeout_s of Ray noticing, exit 2, one message,
    the completed rounds kept."""
    cluster, node = two_nodes
    movable = [cluster.add_node(num_cpus=1, labels={POOL: "movable"}) for _ in range(2)]
    cluster.wait_for_nodes()
    placement = {"generators": {"label_selector": {POOL: "movable"}}, "scorers": {"label_selector": {POOL: "train"}},
                 "learner": {"label_selector": {POOL: "train"}}, "ready_timeout_s": 20}
    run_dir = tmp_path / "run"
    args = ["run", write_config(tmp_path, placement, cluster.address), "--run-dir", str(run_dir), *SMALL_RUN,
            "run.rounds=3", "generation.num_actors=1", "generation.num_cpus_per_actor=1",
            "learner.num_cpus_per_worker=0.5"]
    metrics = lambda i: json.loads((run_dir / f"round_{i:04d}" / "metrics.json").read_text())  # noqa: E731
    with BackgroundRun(*args) as run:
        run.wait_for(lambda: run.saw("[round 1] generate ..."), "round 1's generation")
        [first] = metrics(0)[Metric.NODES]["generators"]
        lost, spare = sorted(movable, key=lambda n: n.node_id != first)
        assert lost.node_id == first
        cluster.remove_node(lost, allow_graceful=False)
        run.wait_for(lambda: run.saw("[round 2] generate ..."), "round 2's generation after the node was lost")
        assert metrics(1)[Metric.NODES]["generators"] == [spare.node_id]
        assert metrics(1)[Metric.NODES]["learner_mailbox"] == [cluster.head_node.node_id]  # never on a lost node
        assert metrics(1)[Metric.PAIRS_TRAINED] > 0
        cluster.remove_node(spare, allow_graceful=False)
        removed = time.monotonic()
        code = run.wait(timeout=300)  # never hangs: Ray marks the node dead in ~15 s, then 20 s of waiting
    waited = time.monotonic() - removed
    assert code == 2, run.stderr[-4000:]
    assert "lost a node" in run.stderr and "placement.ready_timeout_s=20" in run.stderr, run.stderr[-4000:]
    assert "Traceback" not in cli_output(run.stderr), run.stderr[-4000:]
    moved = f"quickstart/generators lost a node; Ray placed it again on node {spare.node_id[:8]}"
    assert run.stderr.count(moved) == 1, run.stderr[-4000:]
    assert waited >= 20, "stopped before the replacement wait was over"
    assert [p.name for p in sorted(run_dir.glob("round_*"))] == ["round_0000", "round_0001"]
    assert all((run_dir / f"round_{i:04d}" / "COMPLETE").exists() for i in (0, 1))
