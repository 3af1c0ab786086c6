"""Prompts as conversations (a column of {role, content} message lists): rendered whole by the chat template,
`prompt` is the user's last message, and a malformed message list names the file, the row and the message."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_model import build_tiny_tokenizer

from actors.contracts import InputError
from cluster.config import PromptSourceSection
from cluster.data.prompts import load_prompts

TOKENIZER = build_tiny_tokenizer()
SYSTEM = {"role": "system", "content": "be brief"}
USER = {"role": "user", "content": "say hello"}
ASSISTANT = {"role": "assistant", "content": "hello"}
AGAIN = {"role": "user", "content": "say it again"}


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def load(path, tokenizer=TOKENIZER, apply_chat_template=True, **source) -> pa.Table:
    return load_prompts(PromptSourceSection(path=str(path), **source), tokenizer, apply_chat_template)


def test_a_conversation_column_is_rendered_whole_and_its_last_user_message_is_the_prompt(tmp_path):
    records = [{"messages": [SYSTEM, USER], "answer": "hello"},
               {"messages": [SYSTEM, USER, ASSISTANT, AGAIN], "answer": "hello"},
               {"messages": [USER], "answer": "hi"},
               {"messages": None, "answer": "skipped"},
               {"messages": [], "answer": "skipped"}]
    table = load(write_jsonl(tmp_path / "chat.jsonl", records), prompt_column="messages")
    assert table.column_names == ["prompt_id", "prompt", "prompt_text", "answer"]
    assert table.column("prompt_id").to_pylist() == ["p0", "p1", "p2"]
    assert table.column("prompt").to_pylist() == ["say hello", "say it again", "say hello"]
    assert table.column("prompt_text").to_pylist() == [
        "<|system|> be brief <|user|> say hello <|assistant|>",
        "<|system|> be brief <|user|> say hello <|assistant|> hello </s> <|user|> say it again <|assistant|>",
        "<|user|> say hello <|assistant|>",
    ]
    # The same through Parquet, with a column named `prompt` (TRL's conversational form).
    pq.write_table(pa.Table.from_pylist([{"prompt": r["messages"], "answer": r["answer"]} for r in records[:3]]),
                   tmp_path / "chat.parquet")
    again = load(tmp_path / "chat.parquet")
    assert again.column("prompt_text").equals(table.column("prompt_text"))


@pytest.mark.parametrize(("messages", "message"), [
    ([{"role": "bot", "content": "hi"}], r"row 2, column 'messages', message 1: role 'bot' is not one of system, user, assistant"),
    ([SYSTEM, {"role": "user"}], r"row 2, column 'messages', message 2: content None is not text"),
    ([USER, SYSTEM, AGAIN], r"row 2, column 'messages', message 2: a system message may only come first"),
    ([SYSTEM, USER, ASSISTANT], r"row 2, column 'messages': the last message is the assistant's; it must be the user's"),
])
def test_a_malformed_conversation_names_the_file_row_and_message(tmp_path, messages, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [USER]}, {"messages": messages}])
    with pytest.raises(InputError, match=rf"^{re.escape(path)}, {message}"):
        load(path, prompt_column="messages")


def test_messages_without_role_or_content_fields_and_no_chat_template_are_input_errors(tmp_path):
    path = write_jsonl(tmp_path / "fields.jsonl", [{"messages": [{"speaker": "user", "text": "hi"}]}])
    with pytest.raises(InputError, match=r"holds lists of .* without the field\(s\) \['role', 'content'\]"):
        load(path, prompt_column="messages")
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [USER]}])
    with pytest.raises(InputError, match="conversations .* and the tokenizer has no chat template"):
        load(path, tokenizer=build_tiny_tokenizer(with_chat_template=False), prompt_column="messages")
    with pytest.raises(InputError, match="conversations .* and data.apply_chat_template is false"):
        load(path, apply_chat_template=False, prompt_column="messages")


def test_conversations_carry_ifeval_columns_to_the_ifeval_reward(tmp_path):
    from cluster.config import RunConfig
    from cluster.run_setup import check_reward_columns

    config = RunConfig.model_validate({"scoring": {"rewards": [{"kind": "programmatic", "name": "ifeval"}]}})
    record = {"messages": [SYSTEM, {"role": "user", "content": "say hello without commas"}],
              "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [record])
    table = load(path, prompt_column="messages")
    assert table.column("prompt").to_pylist() == ["say hello without commas"]
    check_reward_columns(tuple(config.scoring.rewards), table, "data.train", path)
