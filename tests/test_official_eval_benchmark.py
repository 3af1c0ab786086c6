"""benchmarks/official_eval.py: results of one model's benchmarks, run one after the other, land in one JSON,
each with its own machine record; another model's results are not mixed in."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmarks import as scripts do

from official_eval import merged  # noqa: E402


def record(model: str, names: list[str], seconds: float) -> dict:
    return {"model": model, "seconds": seconds, "dtype": "float32", "backend": "vllm",
            "benchmarks": {name: {"average": 0.1 * len(name)} for name in names}}


def test_a_second_benchmark_of_the_same_model_is_added_and_a_rerun_replaces():
    first = merged(None, record("m", ["ifeval-official"], 10.0), {"commit": "a"})
    both = merged(first, record("m", ["ifbench"], 20.0), {"commit": "b"})
    assert set(both["benchmarks"]) == {"ifeval-official", "ifbench"}
    assert both["benchmarks"]["ifeval-official"]["machine"] == {"commit": "a"}
    assert both["benchmarks"]["ifbench"]["machine"] == {"commit": "b"} and both["benchmarks"]["ifbench"]["seconds"] == 20
    rerun = merged(both, record("m", ["ifbench"], 30.0), {"commit": "c"})
    assert rerun["benchmarks"]["ifbench"]["seconds"] == 30 and rerun["benchmarks"]["ifeval-official"]["seconds"] == 10


def test_another_models_results_are_not_kept():
    first = merged(None, record("m", ["ifeval-official"], 10.0), {})
    other = merged(first, record("n", ["ifbench"], 20.0), {})
    assert other["model"] == "n" and set(other["benchmarks"]) == {"ifbench"}
