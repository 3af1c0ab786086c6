"""The PVar headline benchmark (benchmarks/pvar_headline.py) reuses a pool it saved: an hour of generation and
every finished arm hang on pool.json comparing equal to the settings of the same config read again; its stored
result (the older layout) still merges and recomputes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

import pvar_headline  # noqa: E402


def test_a_saved_pool_is_found_again_by_the_same_config_and_not_by_another(tmp_path):
    overrides = ["data.prompts_per_round=400", "generation.samples_per_prompt=8"]
    settings = pvar_headline.pool_settings(pvar_headline.load(overrides), pool_seed=0)
    (tmp_path / "pool.parquet").write_bytes(b"")
    (tmp_path / "pool.json").write_text(json.dumps({"settings": settings, "kept": 3}, indent=2) + "\n")
    again = pvar_headline.pool_settings(pvar_headline.load(overrides), pool_seed=0)
    assert pvar_headline.saved_pool(tmp_path, again) == {"settings": settings, "kept": 3}
    other = pvar_headline.pool_settings(pvar_headline.load([*overrides[:1], "generation.samples_per_prompt=4"]), 0)
    assert pvar_headline.saved_pool(tmp_path, other) is None
    assert pvar_headline.saved_pool(tmp_path, pvar_headline.pool_settings(pvar_headline.load(overrides), 1)) is None
    (tmp_path / "pool.parquet").unlink()
    assert pvar_headline.saved_pool(tmp_path, again) is None


def test_the_stored_result_of_the_older_layout_merges_and_recomputes(tmp_path):
    # benchmarks/results/pvar_headline.json groups its runs by arm and records no settings: --merge reads it through
    # upgrade_report, refuses other settings, and the harness's statistics give back its stored summary.
    stored_path = REPO / "benchmarks" / "results" / "pvar_headline.json"
    stored = json.loads(stored_path.read_text())
    settings = {"config": "configs/smollm2-ifeval.yaml", "overrides": stored["overrides"], "pool_seed": 0, "quick": False}
    previous = pvar_headline.previous_for_merge(stored_path, settings)
    assert len(previous["runs"]) == 6 and all(run["machine"] == stored["machine"] for run in previous["runs"])
    with pytest.raises(SystemExit, match="other settings"):
        pvar_headline.previous_for_merge(stored_path, {**settings, "quick": True})
    summary = pvar_headline.summarise({int(seed): start for seed, start in stored["starts"].items()}, previous["runs"])
    for arm, old in stored["summary"]["arms"].items():
        for name, change in old["delta"].items():
            assert summary["arms"][arm]["delta"][name]["mean"] == pytest.approx(change["mean"], rel=1e-9)
            assert summary["arms"][arm]["delta"][name]["half_width"] == pytest.approx(change["half_width"], rel=1e-9)
    for label, old in stored["summary"]["differences"].items():
        for name, difference in old.items():
            assert summary["differences"][label][name]["half_width"] == pytest.approx(difference["half_width"], rel=1e-9)
            assert summary["differences"][label][name]["mde"] > 0  # every null says what it could have missed
