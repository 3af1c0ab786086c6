"""Prompt loading: JSONL, Parquet, datasets folders and the built-in split into the prompts table."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_model import build_tiny_tokenizer

from actors.contracts import InputError
from cluster.config import PromptSourceSection
from cluster.data.prompts import load_prompts, prompt_texts

TOKENIZER = build_tiny_tokenizer()


def write_jsonl(path, records, extra_lines=()) -> str:
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def load(path, tokenizer=TOKENIZER, apply_chat_template=True, **source) -> pa.Table:
    return load_prompts(PromptSourceSection(path=str(path), **source), tokenizer, apply_chat_template)


def test_jsonl_gives_row_ids_templated_text_and_passes_other_columns_through(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt": "what is 2 plus 3?", "answer": 5}\n\n{"prompt": "hello", "answer": 1, "task": "greet"}\n'
    )

    table = load(path)

    assert table.column_names == ["prompt_id", "prompt", "prompt_text", "answer", "task"]
    assert table.schema.field("prompt_id").type == pa.string() and table.schema.field("prompt_text").type == pa.string()
    assert table.to_pylist() == [
        {
            "prompt_id": "p0",
            "prompt": "what is 2 plus 3?",
            "prompt_text": "<|user|> what is 2 plus 3? <|assistant|>",
            "answer": 5,
            "task": None,
        },
        {
            "prompt_id": "p1",
            "prompt": "hello",
            "prompt_text": "<|user|> hello <|assistant|>",
            "answer": 1,
            "task": "greet",
        },
    ]


def test_prompt_text_is_the_raw_prompt_without_a_template_or_when_disabled(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hello"}])
    assert load(path, apply_chat_template=False).column("prompt_text").to_pylist() == ["hello"]
    no_template = build_tiny_tokenizer(with_chat_template=False)
    assert load(path, tokenizer=no_template).column("prompt_text").to_pylist() == ["hello"]
    assert prompt_texts(["hi"], None, apply_chat_template=True) == ["hi"]


def test_parquet_with_configured_prompt_and_id_columns(tmp_path):
    path = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"qid": [10, 20, 30], "question": ["add 1 and 2", "say hello", "what is 4 plus 4?"]}), path)

    table = load(path, prompt_column="question", id_column="qid", limit=2)

    assert table.column("prompt_id").to_pylist() == ["10", "20"]
    assert table.column("prompt").to_pylist() == ["add 1 and 2", "say hello"]
    assert "question" not in table.column_names and table.column("qid").to_pylist() == [10, 20]


def test_a_datasets_folder_and_a_single_split_dataset_dict_load(tmp_path):
    import datasets

    data = datasets.Dataset.from_dict({"prompt": ["one", "two", "three"], "difficulty": [1, 2, 3]})
    data.save_to_disk(str(tmp_path / "plain"))
    datasets.DatasetDict({"train": data.select([2, 0])}).save_to_disk(str(tmp_path / "dict"))

    plain = load(tmp_path / "plain", apply_chat_template=False)
    split = load(tmp_path / "dict", apply_chat_template=False)

    assert plain.column("prompt").to_pylist() == ["one", "two", "three"]
    assert plain.column("difficulty").to_pylist() == [1, 2, 3]
    assert split.column("prompt").to_pylist() == ["three", "one"] and split.column("prompt_id").to_pylist() == [
        "p0",
        "p1",
    ]


def test_the_builtin_split_keeps_its_prompt_ids(tmp_path):
    split = tmp_path / "train.parquet"
    pq.write_table(
        pa.table({"prompt_id": ["t7", "t9"], "prompt": ["add 1 and 2", "add 3 and 4"], "answer": ["3", "7"]}), split
    )

    table = load_prompts(PromptSourceSection(path="builtin"), TOKENIZER, True, builtin_split_path=str(split))

    assert table.column_names == ["prompt_id", "prompt", "prompt_text", "answer"]
    assert table.column("prompt_id").to_pylist() == ["t7", "t9"]


def test_empty_prompts_are_skipped_and_a_json_array_file_loads(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt": "hello"}, {"prompt": "  "}, {"prompt": None}, {"prompt": "add 1 and 2"}]))
    table = load(path, apply_chat_template=False)
    assert table.column("prompt_id").to_pylist() == ["p0", "p3"]  # ids stay the source rows


def test_a_malformed_jsonl_line_is_reported_with_file_and_line_number(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a"}, {"prompt": "b"}], extra_lines=['{"prompt": "c",}'])
    with pytest.raises(InputError, match=r"bad\.jsonl, line 3: not valid JSON"):
        load(path)
    array_line = write_jsonl(tmp_path / "list.jsonl", [{"prompt": "a"}], extra_lines=['["not", "an object"]'])
    with pytest.raises(InputError, match=r"list\.jsonl, line 2: expected a JSON object.*found a JSON list"):
        load(array_line)


def test_a_missing_prompt_column_lists_the_columns_that_exist(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "a", "answer": 1}])
    with pytest.raises(InputError) as error:
        load_prompts(PromptSourceSection(path=path, prompt_column="prompt"), TOKENIZER, True, key_prefix="data.heldout")
    message = str(error.value)
    assert "data.heldout.prompt_column" in message and "'prompt'" in message and path in message
    assert "['question', 'answer']" in message


@pytest.mark.parametrize("content", ["", "\n\n", '{"prompt": ""}\n{"prompt": " "}\n'])
def test_a_source_without_prompts_is_an_input_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=r"data\.train\.path: no prompts in .*empty\.jsonl"):
        load(path)


def test_a_nonexistent_file_or_unknown_suffix_names_the_key(tmp_path):
    with pytest.raises(InputError, match=r"data\.train\.path: .*nope\.jsonl' does not exist"):
        load(tmp_path / "nope.jsonl")
    (tmp_path / "prompts.txt").write_text("hello\n")
    with pytest.raises(InputError, match=r"data\.train\.format: cannot tell the format .*'\.txt'"):
        load(tmp_path / "prompts.txt")


def test_repeated_or_missing_ids_name_the_rows(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "b"}, {"id": 1, "prompt": "c"}]
    )
    with pytest.raises(InputError, match=r"repeats the id '1' in column 'id' \(rows 1 and 3\)"):
        load(path, id_column="id")
    with pytest.raises(InputError, match=r"data\.train\.id_column: column 'key' is not in"):
        load(path, id_column="key")


def test_columns_the_pipeline_writes_are_rejected(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "response": "b", "reward_judge": 1.0}])
    with pytest.raises(InputError, match=r"\['response', 'reward_judge'\] have names the pipeline writes"):
        load(path)
    # A built-in reward's extra column (the ifeval reward's, declared at its registration) too.
    path = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "a", "ifeval_strict_pass": [True], "notes": "kept"}])
    with pytest.raises(InputError, match=r"\['ifeval_strict_pass'\] have names the pipeline writes"):
        load(path)


def test_a_non_text_prompt_column_and_mixed_types_are_reported(tmp_path):
    numbers = write_jsonl(tmp_path / "n.jsonl", [{"prompt": 1}, {"prompt": 2}])
    with pytest.raises(InputError, match="prompt column 'prompt' holds int64, not text"):
        load(numbers)
    mixed = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "a", "x": 1}, {"prompt": "b", "x": "one"}])
    with pytest.raises(InputError, match="column 'x' mixes value types"):
        load(mixed)
