"""The built-in instruction prompts: size, ids, references, disjoint splits, determinism, loading."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from tiny_model import build_tiny_tokenizer

from actors.rewards.contains_answer import contains_answer
from cluster.config import PromptSourceSection
from cluster.data.instruction_prompts import GENERATORS, SCHEMA, SOURCE_NAME, all_rows, instruction_prompts
from cluster.data.prompts import load_prompts

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def splits() -> dict[str, pa.Table]:
    return {name: instruction_prompts(name) for name in ("train", "heldout")}


def test_a_few_hundred_prompts_of_every_kind_and_difficulty_in_both_splits(splits):
    train, heldout = splits["train"], splits["heldout"]
    assert train.schema == SCHEMA and heldout.schema == SCHEMA
    assert 300 <= train.num_rows + heldout.num_rows <= 1000
    assert heldout.num_rows >= 64  # enough for a held-out evaluation
    for table in (train, heldout):
        assert set(table.column("task").to_pylist()) == set(GENERATORS)
        assert set(table.column("difficulty").to_pylist()) == {1, 2, 3}
    kinds = Counter(train.column("task").to_pylist() + heldout.column("task").to_pylist())
    assert min(kinds.values()) >= 20, kinds


def test_ids_and_prompts_are_unique_and_the_splits_are_disjoint(splits):
    ids = splits["train"].column("prompt_id").to_pylist() + splits["heldout"].column("prompt_id").to_pylist()
    prompts = splits["train"].column("prompt").to_pylist() + splits["heldout"].column("prompt").to_pylist()
    assert len(set(ids)) == len(ids)
    assert len(set(prompts)) == len(prompts)
    assert not set(splits["train"].column("prompt_id").to_pylist()) & set(splits["heldout"].column("prompt_id").to_pylist())


def test_every_row_has_a_reference_containing_its_answer_and_a_prompt_that_does_not(splits):
    for row in splits["train"].to_pylist() + splits["heldout"].to_pylist():
        assert row["prompt"].strip() and row["reference"].strip() and row["answer"].strip(), row
        # The reference is a correct answer by the contains_answer reward; echoing the prompt is not.
        assert contains_answer(row["answer"], row["reference"]), row
        assert not contains_answer(row["answer"], row["prompt"]), row


def test_spot_checked_answers_are_right():
    rows = {row["prompt"]: row for row in all_rows()}
    france = [row for row in rows.values() if row["task"] == "capital" and "France" in row["prompt"]]
    assert [row["answer"] for row in france] == ["Paris"]
    assert rows["How many legs does a spider have?"]["answer"] == "8"
    for row in rows.values():
        if row["prompt"].startswith("Spell the word '") and row["prompt"].endswith("' backwards."):
            word = row["prompt"].split("'")[1]
            assert row["answer"] == word[::-1]
        if row["prompt"].startswith("Sort these numbers from smallest to largest: "):
            numbers = [int(x) for x in row["prompt"].split(": ")[1].rstrip(".").split(", ")]
            assert row["answer"] == ", ".join(map(str, sorted(numbers)))


def _digest_in_a_new_process() -> str:
    code = (
        "import hashlib, json; from cluster.data.instruction_prompts import all_rows; "
        "print(hashlib.sha256(json.dumps(all_rows(), sort_keys=True).encode()).hexdigest())"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_set_is_deterministic_across_calls_and_processes():
    here = hashlib.sha256(json.dumps(all_rows(), sort_keys=True).encode()).hexdigest()
    assert instruction_prompts("train").equals(instruction_prompts("train"))
    assert _digest_in_a_new_process() == here


def test_loads_as_a_prompt_source_with_the_reference_column_and_the_matching_split(splits):
    tokenizer = build_tiny_tokenizer()
    for split in ("train", "heldout"):
        table = load_prompts(PromptSourceSection(path=SOURCE_NAME), tokenizer, True,
                             key_prefix=f"data.{split}", split=split)
        assert table.column_names[:3] == ["prompt_id", "prompt", "prompt_text"]
        assert {"reference", "answer", "task", "difficulty"} <= set(table.column_names)
        assert table.column("prompt_id").to_pylist() == splits[split].column("prompt_id").to_pylist()
    limited = load_prompts(PromptSourceSection(path=SOURCE_NAME, limit=10), tokenizer, True)
    assert limited.num_rows == 10


def test_an_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split"):
        instruction_prompts("validation")
