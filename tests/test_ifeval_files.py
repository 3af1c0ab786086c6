"""Users' prompt files in IFEval's own format (instruction_id_list, kwargs with one object per instruction,
unused keys null) as JSONL, Parquet and a datasets folder: they load, round-trip, score, and a bad row is
one InputError naming the file, the row and the id or field, from the driver's pre-flight."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_model import build_tiny_tokenizer

from actors.contracts import InputError
from actors.rewards.ifeval import parse_kwargs
from actors.rewards.ifeval_fields import IFEVAL_PROMPT_COLUMNS
from actors.rewards.programmatic import get_reward
from cluster.config import PromptSourceSection, RunConfig
from cluster.data.prompts import load_prompts
from cluster.run_setup import check_reward_columns

IDS, KWARGS = IFEVAL_PROMPT_COLUMNS
TOKENIZER = build_tiny_tokenizer()
CONFIG = RunConfig.model_validate({"scoring": {"rewards": [{"kind": "programmatic", "name": "ifeval"}]}})
REWARDS = tuple(CONFIG.scoring.rewards)

# Rows as IFEval's files hold them: a key, the prompt, the ids, and per instruction a kwargs object.
ROWS = [
    {"key": 1000, "prompt": "Write a haiku about rain. Do not use any commas.",
     IDS: ["punctuation:no_comma"], KWARGS: [{}]},
    {"key": 1001, "prompt": "Describe a lamp in fewer than 8 words. Highlight 1 section with markdown.",
     IDS: ["length_constraints:number_words", "detectable_format:number_highlighted_sections"],
     KWARGS: [{"num_words": 8, "relation": "less than"}, {"num_highlights": 1}]},
    {"key": 1002, "prompt": "Name two fruits, include the keywords apple and pear, end with 'Bye now'.",
     IDS: ["keywords:existence", "startend:end_checker"],
     KWARGS: [{"keywords": ["apple", "pear"]}, {"end_phrase": "Bye now"}]},
]


def with_null_keys(rows: list[dict]) -> list[dict]:
    """The rows as HF's google/IFEval stores them: every kwargs struct holds every key, unused ones null."""
    keys = sorted({k for row in rows for kw in row[KWARGS] for k in kw})
    return [{**row, KWARGS: [{k: kw.get(k) for k in keys} for kw in row[KWARGS]]} for row in rows]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def load(path, **source) -> pa.Table:
    return load_prompts(PromptSourceSection(path=str(path), **source), TOKENIZER, True)


def instructions(table: pa.Table) -> list[list[tuple[str, dict]]]:
    """Per row, (id, kwargs without nulls): what a file means, whatever its kwargs' Arrow type."""
    return [[(iid, parse_kwargs(kw)) for iid, kw in zip(ids, kwargs)]
            for ids, kwargs in zip(table.column(IDS).to_pylist(), table.column(KWARGS).to_pylist())]


EXPECTED = [[(iid, kw) for iid, kw in zip(row[IDS], row[KWARGS])] for row in ROWS]


@pytest.mark.parametrize("nulls", [False, True], ids=["original", "null-padded"])
def test_jsonl_parquet_and_datasets_folders_in_ifeval_format_load_and_round_trip(tmp_path, nulls):
    import datasets

    rows = with_null_keys(ROWS) if nulls else ROWS
    jsonl = load(write_jsonl(tmp_path / "ifeval.jsonl", rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ifeval.parquet")
    parquet = load(tmp_path / "ifeval.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ifeval_dataset"))
    folder = load(tmp_path / "ifeval_dataset")
    for table in (jsonl, parquet, folder):
        assert table.column_names == ["prompt_id", "prompt", "prompt_text", "key", IDS, KWARGS]
        assert instructions(table) == EXPECTED
        check_reward_columns(REWARDS, table, "data.train", "ifeval file")
    # The loaded table written back out reads the same (the run folder's Parquet files hold it).
    pq.write_table(jsonl, tmp_path / "again.parquet")
    assert pq.read_table(tmp_path / "again.parquet").equals(jsonl)


def test_prompts_in_ifeval_format_are_scored(tmp_path):
    table = load(write_jsonl(tmp_path / "ifeval.jsonl", with_null_keys(ROWS)))
    rollouts = table.append_column("response", pa.array(["Rain falls soft", "A *bright* little lamp.",
                                                          "An apple and a pear. Bye now"]))
    out = get_reward("ifeval")(rollouts)
    assert out.values.tolist() == [1.0, 1.0, 1.0]
    assert out.columns.column("ifeval_strict_pass").to_pylist() == [[True], [True, True], [True, True]]


def bad_file(tmp_path, change) -> str:
    rows = json.loads(json.dumps(ROWS))
    change(rows[1])
    return write_jsonl(tmp_path / "bad.jsonl", rows)


@pytest.mark.parametrize(("change", "message"), [
    (lambda row: row[IDS].__setitem__(0, "length_constraints:number_wordz"),
     r"row 2 \(prompt_id 'p1'\): 'length_constraints:number_wordz' is not an IFEval instruction id"),
    (lambda row: row[KWARGS][0].__setitem__("num_word", 3),
     r"row 2 \(prompt_id 'p1'\): 'length_constraints:number_words' has kwargs \['num_word'\] that its checker "
     r"does not take \(num_words, relation\)"),
    (lambda row: row[KWARGS][0].pop("relation"),
     r"row 2 .*'length_constraints:number_words' lacks kwargs \['relation'\]"),
    (lambda row: row[KWARGS][0].__setitem__("num_words", -5),
     r"row 2 .*'length_constraints:number_words' kwargs out of range: num_words=-5"),
    (lambda row: row[KWARGS][0].__setitem__("relation", "at most"),
     r"row 2 .*'length_constraints:number_words' rejects kwargs .*ValueError"),
    (lambda row: row[KWARGS][0].__setitem__("num_words", "eight"),
     r"row 2 .*'length_constraints:number_words' rejects kwargs .*TypeError"),
    (lambda row: row[KWARGS].pop(),
     r"row 2 .*2 instruction ids but 1 kwargs entries"),
    (lambda row: (row[IDS].clear(), row[KWARGS].clear()),
     r"row 2 \(prompt_id 'p1'\): instruction_id_list is empty"),
])
def test_a_bad_row_is_one_input_error_naming_the_file_the_row_and_the_id(tmp_path, change, message):
    path = bad_file(tmp_path, change)
    table = load(path)
    with pytest.raises(InputError, match=rf"^data\.train\.path \({re.escape(path)}\), {message}"):
        check_reward_columns(REWARDS, table, "data.train", path)


def test_missing_ifeval_columns_and_a_wrong_column_type_are_named(tmp_path):
    plain = load(write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "hello"}]))
    with pytest.raises(InputError, match=r"scoring\.rewards\[0\] \(programmatic 'ifeval'\) reads the column\(s\) "
                                         r"\['instruction_id_list', 'kwargs'\], which data\.train\.path"):
        check_reward_columns(REWARDS, plain, "data.train", str(tmp_path / "plain.jsonl"))
    words = load(write_jsonl(tmp_path / "words.jsonl", [{"prompt": "hi", IDS: "punctuation:no_comma", KWARGS: [{}]}]))
    with pytest.raises(InputError, match="column 'instruction_id_list' holds string; it must hold a list"):
        check_reward_columns(REWARDS, words, "data.train", str(tmp_path / "words.jsonl"))


def test_kwargs_may_be_json_strings_or_one_json_list_and_bad_json_is_named(tmp_path):
    as_strings = [{**row, KWARGS: [json.dumps(kw) for kw in row[KWARGS]]} for row in ROWS]
    as_one_string = [{**row, KWARGS: json.dumps(row[KWARGS])} for row in ROWS]
    for rows in (as_strings, as_one_string):
        table = load(write_jsonl(tmp_path / "strings.jsonl", rows))
        check_reward_columns(REWARDS, table, "data.train", "strings.jsonl")
    broken = [{**ROWS[0], KWARGS: ["{not json"]}]
    table = load(write_jsonl(tmp_path / "broken.jsonl", broken))
    with pytest.raises(InputError, match=r"row 1 \(prompt_id 'p0'\): kwargs '\{not json' are not valid JSON"):
        check_reward_columns(REWARDS, table, "data.train", "broken.jsonl")
