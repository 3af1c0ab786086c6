"""The PVar headline benchmark (benchmarks/pvar_headline.py) reuses a pool it saved: an hour of generation and
every finished arm hang on pool.json comparing equal to the settings of the same config read again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
