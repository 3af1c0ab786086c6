"""The built-in IFEval-style prompts (`builtin-ifeval`): deterministic, held-out combinations never trained,
instruction text written by the checkers themselves, only offline checkers, loadable as prompts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tiny_model import build_tiny_tokenizer

from actors.rewards.ifeval import check_ifeval_prompts, checker_classes
from actors.rewards.ifeval_fields import IFEVAL_PROMPT_COLUMNS
from cluster.config import PromptSourceSection
from cluster.config_loading import load_config
from cluster.data.ifeval_prompts import (
    EXCLUDED_IDS,
    INSTRUCTION_IDS,
    SEED,
    SOURCE_NAME,
    TASK_KINDS,
    all_splits,
    conflicting,
    heldout_instruction_ids,
    ifeval_prompts,
)
from cluster.data.prompts import load_prompts

IDS, KWARGS = IFEVAL_PROMPT_COLUMNS
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smollm2-ifeval.yaml"


def combinations(table) -> set[tuple[str, str]]:
    return {(task, iid) for task, ids in zip(table.column("task").to_pylist(), table.column(IDS).to_pylist())
            for iid in ids}


def test_the_same_seed_gives_the_same_tables_and_another_seed_others():
    fresh = all_splits.__wrapped__(SEED)  # not the cached tables
    for split in ("train", "heldout"):
        assert fresh[split].equals(ifeval_prompts(split))
    other = all_splits.__wrapped__(SEED + 1)
    assert not other["train"].equals(fresh["train"])


def test_several_hundred_training_prompts_and_a_held_out_split_of_unseen_combinations():
    train, heldout = ifeval_prompts("train"), ifeval_prompts("heldout")
    assert (train.num_rows, heldout.num_rows) == (480, 120)
    assert not combinations(train) & combinations(heldout)
    assert not set(train.column("prompt").to_pylist()) & set(heldout.column("prompt").to_pylist())
    assert len(set(train.column("prompt_id").to_pylist() + heldout.column("prompt_id").to_pylist())) == 600
    # Every instruction and every task kind is trained; the held-out ids of a kind are the only ones it tests.
    assert {iid for _, iid in combinations(train)} == set(INSTRUCTION_IDS)
    assert set(train.column("task").to_pylist()) == set(heldout.column("task").to_pylist()) == set(TASK_KINDS)
    held = heldout_instruction_ids()
    assert all(iid in held[task] for task, iid in combinations(heldout))
    assert all(1 <= len(ids) <= 3 for table in (train, heldout) for ids in table.column(IDS).to_pylist())


def test_the_instruction_text_is_the_checkers_own_and_no_two_instructions_conflict():
    classes = checker_classes()
    for table in (ifeval_prompts("train"), ifeval_prompts("heldout")):
        for row in table.to_pylist():
            assert len(row[IDS]) == len(row[KWARGS])
            for iid, kwargs in zip(row[IDS], row[KWARGS]):
                assert classes[iid](iid).build_description(**json.loads(kwargs)) in row["prompt"], (iid, row["prompt"])
            assert not any(conflicting(a, b) for a, b in itertools.combinations(row[IDS], 2)), row[IDS]
        check_ifeval_prompts(table, "scoring.rewards[0]", SOURCE_NAME)  # every row's checkers build and run


def test_only_offline_checkers_are_drawn():
    used = {iid for split in ("train", "heldout") for ids in ifeval_prompts(split).column(IDS).to_pylist() for iid in ids}
    assert used == set(INSTRUCTION_IDS) and not used & set(EXCLUDED_IDS)
    assert {"length_constraints:number_sentences", "change_case:capital_word_frequency"} <= set(EXCLUDED_IDS)


def test_the_set_loads_as_a_prompt_source_and_its_kwargs_survive_parquet(tmp_path):
    tokenizer = build_tiny_tokenizer()
    table = load_prompts(PromptSourceSection(path=SOURCE_NAME), tokenizer, True, key_prefix="data.heldout",
                         split="heldout")
    assert table.column_names == ["prompt_id", "prompt", "prompt_text", "task", "topic", IDS, KWARGS]
    assert table.num_rows == 120 and table.column("prompt_text")[0].as_py().startswith("<|user|> ")
    # Written out as a user's file (the loader writes prompt_text itself), it reads back the same.
    pq.write_table(table.drop_columns(["prompt_text"]), tmp_path / "ifeval.parquet")
    again = load_prompts(PromptSourceSection(path=str(tmp_path / "ifeval.parquet")), tokenizer, True)
    assert again.equals(table)


def test_the_smollm2_ifeval_config_uses_the_set_and_the_reward():
    config = load_config(CONFIG)
    assert config.data.train.path == config.data.heldout.path == SOURCE_NAME
    assert [(spec.kind, spec.name) for spec in config.scoring.rewards] == [("programmatic", "ifeval")]
    assert config.model.path == "smollm2-135m-instruct"


@pytest.mark.parametrize("split", ["validation", "test"])
def test_an_unknown_split_is_refused(split):
    with pytest.raises(ValueError, match="split must be one of"):
        ifeval_prompts(split)
