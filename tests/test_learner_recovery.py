"""Learner recovery (cluster/learner_recovery.py).

Unit tests of the restart logic with stand-in learners (fault injection: the errors Ray Train raises when a
worker process dies, or when the training code fails), then the real thing: the shared kill-and-resume run
(tests/conftest.py) loses a Ray Train worker in its last start; it must finish every round unattended, say so in
one line, and produce the rounds the uninterrupted run produces, file for file (tests/test_exact_resume.py).
"""

from __future__ import annotations

import json

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError
from ray.train import ControllerError, WorkerGroupError

from actors.contracts import METRICS_FILE
from cluster.learner_client import LearnerError
from cluster.learner_recovery import RecoveringLearner, lost_a_worker


def ended_by(failures: dict | BaseException) -> LearnerError:
    """The LearnerError DPOLearner raises when its Ray Train run ended with these worker failures (or, for one
    exception, with that controller failure: a worker lost while the group starts)."""
    cause = ControllerError(failures) if isinstance(failures, BaseException) else WorkerGroupError("failed", failures)
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
    # Seen in benchmarks/fault_injection.py: a RayTrainWorker SIGKILLed while the restarted learner started.
    assert lost_a_worker(ended_by(ActorDiedError())) == "a starting worker: ActorDiedError"
    assert lost_a_worker(ended_by(RuntimeError("the controller's own bug"))) is None
    # The mailbox actor lost (its node removed): a new learner brings a new mailbox.
    try:
        raise LearnerError("round 2: the learner's mailbox was lost") from ActorUnavailableError("socket closed", None)
    except LearnerError as error:
        assert lost_a_worker(error) == "its mailbox: ActorUnavailableError"


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


def test_a_lost_learner_worker_costs_one_line_and_changes_nothing(killed_and_resumed_run):
    """The shared kill-and-resume run's last start lost a Ray Train worker (tests/conftest.py): it finished
    unattended, said so in one line and no traceback, and its rounds equal the uninterrupted run's
    (tests/test_exact_resume.py checks the files)."""
    stderr = killed_and_resumed_run.resumed_stderr
    said = [line for line in stderr.splitlines() if "learner lost a worker" in line]
    assert len(said) == 1 and "(restart 1 of learner.max_restarts=3)" in said[0], stderr[-4000:]
    # One line, not a page: Ray's and gloo's tracebacks stay in Ray's log files (cluster/ray_console.py).
    assert "Traceback" not in stderr, stderr[-4000:]
    lost_in = int(said[0].split("during round ")[1].split(" ")[0])
    learner = json.loads((killed_and_resumed_run.run_dir / f"round_{lost_in:04d}" / METRICS_FILE).read_text())["learner"]
    assert learner["restarts"] == 1 and learner["restarts_total"] == 1
