"""benchmarks/fault_injection.py's own logic: which processes it can kill (read from Ray's process titles) and how
its target is judged. The benchmark itself runs the quickstart many times: it lives in benchmarks/."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmarks import as scripts do

import fault_injection  # noqa: E402


def test_actor_classes_are_read_from_rays_process_titles():
    read = fault_injection.actor_class
    assert read("ray::quickstart/generator-0:Generator.generate") == "Generator"  # a named actor, busy
    assert read("ray::quickstart/scorer-0:Scorer") == "Scorer"
    assert read("ray::RayTrainWorker") == "RayTrainWorker"
    assert read("ray::VLLMGenerator.generate") == "VLLMGenerator"
    assert read("/usr/bin/python -m cluster.cli run") is None


def run(seed: int, kills: int, identical: bool) -> dict:
    return {"seed": seed, "kills_survived": kills, "rounds_redone": 1, "overhead": 0.2, "rounds_identical": identical,
            "final_identical": identical, "kills_by_kind": {"generator": kills, "scorer": 0, "learner_worker": 0,
                                                             "driver": 0},
            "undisturbed": {"wall_seconds": 10.0, "final_heldout_reward": 0.5},
            "disturbed": {"wall_seconds": 12.0, "final_heldout_reward": 0.5 if identical else 0.4,
                          "learner_restarts": 0}}


def test_the_target_needs_every_kill_survived_and_identical_rounds():
    assert fault_injection.report([run(0, 20, True), run(1, 20, True)], 20)["target_met"]
    assert not fault_injection.report([run(0, 20, True), run(1, 20, False)], 20)["target_met"]
    assert not fault_injection.report([run(0, 19, True)], 20)["target_met"]


def test_a_run_that_ends_before_every_kill_is_named():
    summary = fault_injection.report([run(0, 20, True), run(1, 17, True)], 20)
    assert not summary["target_met"] and summary["ended_before_every_kill"] == {1: 17}
