"""Prompts in conversational form: a prompt column holding a list of `{role, content}` messages.

Such a column (what chat datasets and TRL's conversational format use: a system prompt, earlier
turns, then the user's message) is accepted wherever a plain prompt string is. Prompt loading
(cluster/data/prompts.py) takes from each conversation the `prompt`, the text of its last message
(the user's), and renders the whole conversation with the tokenizer's chat template and the
generation prompt into `prompt_text`, what the model is fed (docs/tables.md).

A malformed conversation is an InputError naming the file, the 1-based row and the message: a role
other than system, user or assistant, a content that is not text, a system message after the first,
or a last message that is not the user's. A null or empty conversation is an empty prompt (skipped).
"""

from __future__ import annotations

import pyarrow as pa

from actors.contracts import InputError

ROLES = ("system", "user", "assistant")
MESSAGE_FIELDS = ("role", "content")

Conversation = list[dict[str, str]]


def is_conversation_type(kind: pa.DataType) -> bool:
    """True for a list of structs: a column of message lists."""
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type)


def conversation_prompts(column: pa.ChunkedArray, name: str, path: str) -> tuple[pa.Array, list[Conversation | None]]:
    """Per row, the last message's text (null for a null or empty conversation) and the checked messages
    (role and content only)."""
    fields = {field.name for field in column.type.value_type}
    absent = [f for f in MESSAGE_FIELDS if f not in fields]
    if absent:
        raise InputError(f"{path}: prompt column {name!r} holds lists of {column.type.value_type}, without the "
                         f"field(s) {absent}; a conversation is a list of {{\"role\": ..., \"content\": ...}} messages")
    conversations: list[Conversation | None] = []
    for row, messages in enumerate(column.to_pylist()):
        conversations.append(_checked(messages, f"{path}, row {row + 1}, column {name!r}") if messages else None)
    last = [None if messages is None else messages[-1]["content"] for messages in conversations]
    return pa.array(last, pa.string()), conversations


def _checked(messages: list[dict], where: str) -> Conversation:
    for index, message in enumerate(messages):
        at = f"{where}, message {index + 1}"
        if message is None:
            raise InputError(f"{at}: is null; every message is {{\"role\": ..., \"content\": ...}}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InputError(f"{at}: role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise InputError(f"{at}: content {content!r} is not text")
        if role == "system" and index > 0:
            raise InputError(f"{at}: a system message may only come first")
    if messages[-1].get("role") != "user":
        raise InputError(f"{where}: the last message is the {messages[-1].get('role')}'s; it must be the user's "
                         "(the model answers it)")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def conversation_texts(conversations: list[Conversation], tokenizer, apply_chat_template: bool,
                       rows: list[int], path: str) -> list[str]:
    """Each conversation rendered by the chat template with the generation prompt; `rows` (0-based source
    rows) name a conversation the template refuses."""
    if not (apply_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None)):
        why = "data.apply_chat_template is false" if not apply_chat_template else "the tokenizer has no chat template"
        raise InputError(f"{path}: the prompts are conversations (lists of role/content messages), which only a chat "
                         f"template can turn into text, and {why}; use plain text prompts or a chat model")
    texts = []
    for row, messages in zip(rows, conversations, strict=True):
        try:
            texts.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        except Exception as error:  # noqa: BLE001 - jinja's template errors have no common base worth naming
            raise InputError(f"{path}, row {row + 1}: the chat template cannot render this conversation "
                             f"({type(error).__name__}: {error})") from None
    return texts
