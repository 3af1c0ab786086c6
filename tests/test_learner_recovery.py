"""Learner recovery (cluster/learner_recovery.py).

Unit tests of the restart logic with stand-in learners (fault injection: the errors Ray Train raises when a
worker process dies, or when the training code fails), then the real thing: the quickstart through the CLI
with one Ray Train worker SIGKILLed during round 1. The run must finish every round unattended, say so in one
line, and produce the rounds an undisturbed run produces (the session's shared quickstart run), file for file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from ray.exceptions import ActorDiedError
from ray.train import WorkerGroupError

from actors.contracts import COMPLETE_MARKER, METRICS_FILE
from cluster.learner_client import LearnerError
from cluster.learner_recovery import RecoveringLearner, lost_a_worker


def ended_by(failures: dict) -> LearnerError:
    """The LearnerError DPOLearner raises when its Ray Train run ended with these worker failures."""
    cause = WorkerGroupError("workers failed", failures)
    try:
        raise LearnerError("the learner's Ray Train run ended during round 1") from cause
    except LearnerError as error:
        return error


def test_only_a_lost_process_counts_as_a_lost_worker():
    assert lost_a_worker(ended_by({1: ActorDiedError()})) == "rank 1: ActorDiedError"
    assert lost_a_worker(ended_by({0: RuntimeError("gloo: connection reset"), 1: ActorDiedError()})) \
        == "rank 1: ActorDiedError"
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError

    # How Ray Train reports a SIGKILLed worker: its health check failed with the actor's death.
    health = WorkerHealthCheckFailedError("A worker health check failed.", ActorDiedError())
    assert lost_a_worker(ended_by({0: RuntimeError("gloo"), 1: health})) == "rank 1: ActorDiedError"
    assert lost_a_worker(ended_by({1: WorkerHealthCheckTimeoutError("no answer")})) == "rank 1: health check timed out"
    assert lost_a_worker(ended_by({0: ValueError("a bug in the training code")})) is None
    assert lost_a_worker(LearnerError("the learner was shut down")) is None
    assert lost_a_worker(LearnerError("round 3 did not finish", timed_out=True)) is not None


class StandInLearner:
    """Fails its first `failures` collects with `error`, then returns metrics; records what it was given."""

    transport = "object_store"

    def __init__(self, log: list, error: LearnerError | None):
        self.log, self.error = log, error
        self.log.append(("start",))

    def submit(self, round_index, pairs, checkpoint_dir):
        self.log.append(("submit", round_index, pairs, checkpoint_dir))

    def collect(self, round_index):
        if self.error is not None:
            raise self.error
        return {"loss": 0.5}, f"handle-{round_index}"

    def shutdown(self, timeout_s=60.0):
        self.log.append(("shutdown",))


def recovering(errors: list[LearnerError | None], max_restarts: int, log: list) -> RecoveringLearner:
    queue = list(errors)
    return RecoveringLearner(lambda: StandInLearner(log, queue.pop(0) if queue else None), max_restarts)


def test_a_lost_worker_restarts_the_learner_and_trains_the_round_again(tmp_path):
    log: list = []
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"half")  # what the lost learner half-saved
    learner = recovering([ended_by({1: ActorDiedError()}), ended_by({0: ActorDiedError()})], 3, log)
    metrics, handle = learner.train_round(4, "pairs", str(checkpoint))
    assert handle == "handle-4" and metrics == {"loss": 0.5, "restarts": 2, "restarts_total": 2}
    assert log == [("start",), ("submit", 4, "pairs", str(checkpoint)), ("shutdown",),
                   ("start",), ("submit", 4, "pairs", str(checkpoint)), ("shutdown",),
                   ("start",), ("submit", 4, "pairs", str(checkpoint))]
    assert not checkpoint.exists()
    # The budget is the run's: one restart left, then a lost worker ends the run.
    learner.max_restarts = 3
    learner._learner.error = ended_by({1: ActorDiedError()})
    metrics, _ = learner.train_round(5, "pairs", str(checkpoint))
    assert (metrics["restarts"], metrics["restarts_total"]) == (1, 3)
    learner._learner.error = ended_by({1: ActorDiedError()})
    with pytest.raises(LearnerError):
        learner.train_round(6, "pairs", str(checkpoint))


def test_an_error_in_the_training_code_is_not_retried():
    log: list = []
    learner = recovering([ended_by({0: ValueError("shape mismatch")})], 3, log)
    with pytest.raises(LearnerError):
        learner.train_round(0, "pairs", "unused")
    assert [entry[0] for entry in log] == ["start", "submit"]


def test_max_restarts_0_ends_the_run_at_the_first_lost_worker():
    learner = recovering([ended_by({1: ActorDiedError()})], 0, [])
    with pytest.raises(LearnerError):
        learner.train_round(0, "pairs", "unused")


# --- the real thing ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_with_a_lost_learner_worker(tmp_path_factory):
    """The quickstart (as the shared run: two rounds, SMALL_RUN) with Ray Train's rank-1 worker SIGKILLed
    once round 1 has begun; (run_dir, stderr)."""
    from cli_helpers import QUICKSTART, REPO, SMALL_RUN, cli_command, cli_env

    run_dir = tmp_path_factory.mktemp("lost-worker") / "run"
    args = ["run", str(QUICKSTART), "--run-dir", str(run_dir), "run.rounds=2", *SMALL_RUN]
    proc = subprocess.Popen(cli_command(*args), cwd=REPO, env=cli_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 400
        while not (run_dir / ".round_0001.partial").exists():
            assert proc.poll() is None and time.time() < deadline, "round 1 never started"
            time.sleep(0.1)
        pids = json.loads((run_dir / "round_0000" / METRICS_FILE).read_text())["learner"]["worker_pid_per_rank"]
        os.kill(int(pids[1]), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    (run_dir.parent / "stderr.txt").write_text(stderr)
    assert proc.returncode == 0, stderr[-4000:]
    return run_dir, stderr


def test_a_lost_learner_worker_costs_one_line_and_changes_nothing(run_with_a_lost_learner_worker, quickstart_run):
    from cli_helpers import tree_digest

    run_dir, stderr = run_with_a_lost_learner_worker
    said = [line for line in stderr.splitlines() if "learner lost a worker" in line]
    assert len(said) == 1 and "during round 1" in said[0] and "rank 1" in said[0], stderr[-4000:]
    # One line, not a page: Ray's and gloo's tracebacks stay in Ray's log files (cluster/ray_console.py).
    assert "Traceback" not in stderr, stderr[-4000:]
    learner = json.loads((run_dir / "round_0001" / METRICS_FILE).read_text())["learner"]
    assert (learner["restarts"], learner["restarts_total"]) == (1, 1)
    for index in (0, 1):
        name = f"round_{index:04d}"
        mine, theirs = tree_digest(run_dir / name), tree_digest(quickstart_run[0] / name)
        assert set(mine) == set(theirs), name
        assert sorted(p for p in mine if mine[p] != theirs[p]) == sorted([METRICS_FILE, COMPLETE_MARKER]), name

