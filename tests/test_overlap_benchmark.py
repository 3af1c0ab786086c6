"""The overlap benchmark's arithmetic (benchmarks/overlap.py) on timelines with a known answer, and its summary
recomputed from the runs of the stored results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

from overlap import arms_for, print_table, summarise, timeline_numbers, upgrade_run  # noqa: E402


def synchronous_round(start: float) -> list[dict]:
    """One 10 s round: generate 2 s, score 1 s, train 5 s, sync 0.5 s, eval 1.5 s, back to back."""
    spans, at = [], start
    for phase, seconds in (("generate", 2.0), ("score", 1.0), ("train", 5.0), ("sync", 0.5), ("eval", 1.5)):
        spans.append({"phase": phase, "start": at, "end": at + seconds})
        at += seconds
    return spans


def test_a_synchronous_run_is_the_sum_of_its_phases_against_the_bound_of_the_longest():
    timelines = [synchronous_round(10.0 * n) for n in range(5)]
    numbers = timeline_numbers(timelines)
    # Window: end of round 0 (10 s) to end of round 3 (40 s), three rounds.
    assert numbers["seconds_per_round"] == pytest.approx(10.0)
    assert numbers["rollout_seconds"] == pytest.approx(3.0) and numbers["train_seconds_mean"] == pytest.approx(5.0)
    assert numbers["over_bound"] == pytest.approx(2.0)
    # The generators work in generate, sync and eval: 4 of every 10 s.
    assert numbers["generator_idle_share"] == pytest.approx(0.6)


def test_a_perfect_overlap_meets_the_bound():
    # Each round's training (5 s) runs beside the next round's rollout: rounds end 5 s apart.
    timelines = []
    for n in range(5):
        begin = 5.0 * n
        timelines.append([{"phase": "generate", "start": begin, "end": begin + 2.0},
                          {"phase": "score", "start": begin + 2.0, "end": begin + 3.0},
                          {"phase": "train", "start": begin + 5.0, "end": begin + 10.0}])
    numbers = timeline_numbers(timelines)
    assert numbers["seconds_per_round"] == pytest.approx(5.0)
    assert numbers["over_bound"] == pytest.approx(1.0)


@pytest.mark.parametrize("stored", ["overlap", "overlap_no_diagnostics", "overlap_smollm2"])
def test_a_stored_result_of_the_older_layout_is_recomputed_from_its_runs(stored, capsys):
    # benchmarks/results/overlap*.json hold runs of the older layout (max_lag, before, per_round): upgrade_run
    # reads them, and the harness's statistics give back the summary stored beside them.
    report = json.loads((REPO / "benchmarks" / "results" / f"{stored}.json").read_text())
    runs = [upgrade_run(run, report["machine"]) for run in report["runs"]]
    assert {run["arm"] for run in runs} == {"max_lag_0", "max_lag_1"} and all(run["machine"] for run in runs)
    summary = summarise(arms_for(report["config"]), runs)
    for lag in ("0", "1"):
        old, new = report["summary"]["arms"][lag], summary["arms"][f"max_lag_{lag}"]
        for key in ("seconds_per_round", "generator_idle_share", "over_bound", "over_synchronous_bound",
                    "wall_seconds"):
            assert new[key]["mean"] == pytest.approx(old[key]["mean"], rel=1e-9)
            assert new[key]["half_width"] == pytest.approx(old[key]["half_width"], rel=1e-9)
        assert new["heldout"][0] == pytest.approx(old["heldout_before"]["mean"], rel=1e-9)
        assert new["heldout"][1:] == pytest.approx([point["mean"] for point in old["heldout_per_round"]], rel=1e-9)
    for key in ("speedup", "last_round_difference"):
        assert summary[key]["mean"] == pytest.approx(report["summary"][key]["mean"], rel=1e-9)
        assert summary[key]["half_width"] == pytest.approx(report["summary"][key]["half_width"], rel=1e-9)
    # The paired differences say what they could have missed.
    assert summary["last_round_difference"]["mde"] > 0 and summary["seconds_saved_per_round"]["mde"] > 0
    print_table(summary)
    assert "/ sync bound" in capsys.readouterr().out
