"""The driver's console filter (cluster/ray_console.py): Ray's internal actors' lines and Ray Train's
training-error blocks stay out of it, everything else is shown. Pure logic; its effect on a real run with a
lost learner worker is checked in tests/test_learner_recovery.py."""

from __future__ import annotations


def test_the_console_drops_rays_internal_actors_and_training_error_blocks():
    from cluster.ray_console import kept_lines

    blocks: set = set()
    assert kept_lines({"actor_name": "TrainController", "pid": 1, "lines": ["Traceback ...", "x"]}, blocks) == []
    worker = {"actor_name": "RayTrainWorker", "pid": 2}
    assert kept_lines({**worker, "lines": ["Moving model to device: cpu", "Error in training function:",
                                           "Traceback (most recent call last):"]}, blocks) \
        == ["Moving model to device: cpu"]
    # The block goes on in the next batch until its first empty line; then lines show again.
    assert kept_lines({**worker, "lines": ["RuntimeError: gloo", "", "Checkpoint created"]}, blocks) \
        == ["Checkpoint created"]
    assert kept_lines({"actor_name": "Generator", "pid": 3, "lines": ["a line"]}, blocks) == ["a line"]
