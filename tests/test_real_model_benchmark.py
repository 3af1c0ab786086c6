"""The real-model benchmark (benchmarks/real_model.py) recomputes, from the runs stored in
benchmarks/results/real_model.json (the older layout: no `arm`, no per-run machine), the summary stored beside
them: its statistics moved to the harness without changing a number."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

import real_model  # noqa: E402

STORED = REPO / "benchmarks" / "results" / "real_model.json"


def assert_contains(recomputed, stored, path: str = "summary") -> None:
    """Every field of `stored` is in `recomputed` with the same value (floats to 1e-9); extra fields are new."""
    if isinstance(stored, dict):
        for key, value in stored.items():
            assert key in recomputed, f"{path}.{key} is missing"
            assert_contains(recomputed[key], value, f"{path}.{key}")
    elif isinstance(stored, list):
        assert len(recomputed) == len(stored), path
        for index, (mine, theirs) in enumerate(zip(recomputed, stored)):
            assert_contains(mine, theirs, f"{path}[{index}]")
    elif isinstance(stored, float):
        assert math.isclose(recomputed, stored, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {recomputed} != {stored}"
    else:
        assert recomputed == stored, f"{path}: {recomputed} != {stored}"


def test_the_stored_summary_is_recomputed_from_the_stored_runs(capsys):
    stored = json.loads(STORED.read_text())
    summary = real_model.summarise(stored["runs"])
    assert_contains(summary, stored["summary"])
    # The change is paired by seed now: its minimum detectable effect sits beside it.
    delta = summary["overall"][real_model.HEADLINE]["delta"]
    assert delta["seeds"] == stored["seeds"] and delta["mde"] > 0
    real_model.print_report({**stored, "summary": summary})
    printed = capsys.readouterr().out
    assert "+12.2 ± 8.3" in printed and "-> met" in printed  # docs/ifeval.md's four-seed result


def test_the_arm_is_the_config_with_the_scripts_overrides():
    arm = real_model.the_arm(str(real_model.CONFIG), [*real_model.QUICK, "run.rounds=1"])
    assert arm.config == "configs/smollm2-ifeval.yaml" and arm.name == "passive"
    assert arm.overrides_for(3)[-2:] == ["run.rounds=1", "run.seed=3"]
