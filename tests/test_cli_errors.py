"""Bad input through the real CLI: one clear message naming the file, line or key; exit code 2."""

from __future__ import annotations

import json

import pytest

from cli_helpers import QUICKSTART, SMALL_RUN, run_cli


def assert_clean_failure(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-3000:])


def test_unknown_config_key_suggests_the_right_one(tmp_path):
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(tmp_path), "learner.lerning_rate=0.1")
    assert_clean_failure(result, "learner.lerning_rate", "did you mean 'learning_rate'")


def test_malformed_jsonl_line_is_named(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "a"}) + "\n" + '{"prompt": "b"\n')
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(tmp_path / "run"), f"data.train.path={prompts}")
    assert_clean_failure(result, str(prompts), "line 2")


def test_missing_prompt_column_lists_the_columns_there_are(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"question": "a"}) + "\n")
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(tmp_path / "run"), f"data.train.path={prompts}")
    assert_clean_failure(result, "prompt", "question", str(prompts))


def test_empty_prompt_set(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("")
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(tmp_path / "run"), f"data.train.path={prompts}")
    assert_clean_failure(result, str(prompts))
    assert "no prompts" in result.stderr.lower() or "empty" in result.stderr.lower()


def test_reward_model_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "no-such-rm"
    result = run_cli(
        "run", str(QUICKSTART), "--run-dir", str(tmp_path / "run"),
        f"scoring.rewards=[{{kind: hf_classifier, path: {missing}}}]", *SMALL_RUN,
    )
    assert_clean_failure(result, "scoring.rewards[0].path", str(missing))


@pytest.mark.parametrize("override", ["run.rounds=0", "generation.top_p=1.5"])
def test_out_of_range_values_name_the_key(tmp_path, override):
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(tmp_path), override)
    assert_clean_failure(result, override.split("=")[0])
