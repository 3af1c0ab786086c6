"""`activedpo benchmark` through the real CLI: official IFEval / IFBench on a model without training (a real
embedded Ray cluster and generator actor, the built-in tiny model, a few prompts), and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import QUICKSTART, run_cli
from test_cli_errors import assert_clean_failure


def test_benchmark_writes_both_benchmarks_for_the_configs_model(tmp_path):
    out = tmp_path / "official.json"
    result = run_cli("benchmark", str(QUICKSTART), "--out", str(out), "eval.benchmarks.num_prompts=3",
                     "eval.benchmarks.max_new_tokens=8", "ray.include_dashboard=false")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert set(record["benchmarks"]) == {"ifeval-official", "ifbench"}
    for name, of in (("ifeval-official", 541), ("ifbench", 294)):
        result_ = record["benchmarks"][name]
        assert result_["settings"] == {**result_["settings"], "prompts": 3, "of": of, "decoding": "greedy",
                                       "max_new_tokens": 8, "samples_per_prompt": 1}
        assert result_["responses"] == 3 and 0 <= result_["truncated"] <= 3
        assert f"{name}: average" in result.stdout
    assert (Path(record["model"]) / "config.json").is_file() and record["seconds"] > 0


def test_a_model_folder_that_is_not_one_is_named(tmp_path):
    result = run_cli("benchmark", str(QUICKSTART), "--model", str(tmp_path / "nowhere"))
    assert_clean_failure(result, "--model", str(tmp_path / "nowhere"), "config.json")


def test_an_unknown_benchmark_name_is_named():
    result = run_cli("benchmark", str(QUICKSTART), "eval.benchmarks.names=[ifeval]")
    assert_clean_failure(result, "eval.benchmarks.names", "ifeval-official")
