"""Prompt loading: a JSONL, Parquet or datasets folder (or a built-in set) into the prompts table.

The prompts table (docs/tables.md) has `prompt_id`, `prompt` (the user's text),
`prompt_text` (what the model is fed: the chat-template rendering with the generation prompt, or
the raw prompt) and every other source column unchanged. Runs on the driver with plain pyarrow (and
`datasets` for save_to_disk folders); the table then travels to actors through the object store.
Three sources are built in: 'builtin' (a split of the synthetic task, cluster/data/builtin_task.py),
'builtin-instructions' (instruction prompts with reference answers, cluster/data/instruction_prompts.py)
and 'builtin-ifeval' (tasks with IFEval's verifiable instructions, cluster/data/ifeval_prompts.py); two
are installed: 'ifeval-official' and 'ifbench', the official benchmarks' prompts
(actors/rewards/instruction_benchmarks.py).
The prompt column holds text, or conversations (lists of role/content messages, rendered whole by
the chat template: cluster/data/conversations.py).

Every problem a user can fix raises InputError naming the config key, the file and, for JSONL, the
1-based line: a malformed line, a missing column (listing the columns that exist), duplicate ids,
column names the pipeline writes itself, or no prompts at all.
"""

from __future__ import annotations

import json
import logging
import os
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from actors.contracts import LOADER_WRITTEN_COLUMNS, InputError, is_pipeline_column
from actors.rewards.instruction_benchmarks import BENCHMARKS, benchmark_table
from actors.rewards.programmatic import BUILTIN_EXTRA_COLUMNS
from cluster.config import PromptSourceSection
from cluster.data.conversations import conversation_prompts, conversation_texts, is_conversation_type
from cluster.data.ifeval_prompts import SOURCE_NAME as IFEVAL_SOURCE
from cluster.data.ifeval_prompts import ifeval_prompts
from cluster.data.instruction_prompts import SOURCE_NAME as INSTRUCTIONS_SOURCE
from cluster.data.instruction_prompts import instruction_prompts

logger = logging.getLogger(__name__)

ROW_COLUMN = "__source_row"  # 0-based source row, kept while filtering for error messages
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
# The built-in prompt sets by the name data.*.path gives them: split name -> table. The official benchmarks
# have one split, the same for both (they are test sets: train on them only knowingly).
BUILTIN_SETS = {INSTRUCTIONS_SOURCE: instruction_prompts, IFEVAL_SOURCE: ifeval_prompts,
                **{name: partial(lambda name, split: benchmark_table(name), name) for name in BENCHMARKS}}


def load_prompts(
    source: PromptSourceSection,
    tokenizer,
    apply_chat_template: bool,
    builtin_split_path: str | None = None,
    key_prefix: str = "data.train",
    split: str = "train",
) -> pa.Table:
    """Read `source` into the prompts table; `key_prefix` (e.g. 'data.heldout') names config keys in errors.

    `split` ('train' or 'heldout') picks the split of a built-in prompt set.
    """
    if source.path in BUILTIN_SETS:
        raw = BUILTIN_SETS[source.path](split)
        return _prompts_table(raw, source, f"{source.path} ({split} split)", tokenizer, apply_chat_template,
                              key_prefix)
    if source.path == "builtin":
        if builtin_split_path is None:
            raise ValueError(
                "load_prompts: path 'builtin' needs builtin_split_path (the built-in task's parquet split)"
            )
        path, fmt = builtin_split_path, "parquet"
    else:
        path, fmt = source.path, _resolve_format(source.path, source.format, key_prefix)
    raw = read_table(path, fmt)
    return _prompts_table(raw, source, path, tokenizer, apply_chat_template, key_prefix)


def prompt_texts(prompts: list[str], tokenizer, apply_chat_template: bool) -> list[str]:
    """What the model is fed per prompt: one user turn plus the generation prompt, if the tokenizer has a template."""
    if not (apply_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None)):
        return list(prompts)
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]


def read_table(path: str, fmt: str) -> pa.Table:
    """The whole source as an Arrow table, in its own column names and types."""
    readers = {"jsonl": _read_jsonl, "parquet": _read_parquet, "datasets": _read_datasets_folder}
    return readers[fmt](path)


def _resolve_format(path: str, fmt: str, key_prefix: str) -> str:
    if not os.path.exists(path):
        raise InputError(
            f"{key_prefix}.path: {path!r} does not exist; give a .jsonl or .parquet file, a folder written by "
            f"datasets' save_to_disk, 'builtin', '{INSTRUCTIONS_SOURCE}', '{IFEVAL_SOURCE}' or one of "
            f"{sorted(BENCHMARKS)}"
        )
    if fmt != "auto":
        return fmt
    if os.path.isdir(path):
        return "datasets"
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIX_FORMATS:
        raise InputError(
            f"{key_prefix}.format: cannot tell the format of {path!r} from its suffix {suffix!r}; "
            f"set {key_prefix}.format to 'jsonl', 'parquet' or 'datasets'"
        )
    return SUFFIX_FORMATS[suffix]


def _read_jsonl(path: str) -> pa.Table:
    """JSON Lines (one object per line; blank lines ignored), or a .json file holding one array of objects."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a JSONL file")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(f"{path}, line {line}: not UTF-8 text ({error.reason}); save the file as UTF-8") from None
    records = _json_array_records(path, text) if text.lstrip().startswith("[") else _json_lines_records(path, text)
    return _records_to_table(path, records)


def _json_lines_records(path: str, text: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{path}, line {number}: not valid JSON ({error.msg} at character {error.colno}); "
                'each line must be one JSON object such as {"prompt": "..."}'
            ) from None
        if not isinstance(record, dict):
            raise InputError(
                f'{path}, line {number}: expected a JSON object such as {{"prompt": "..."}}, '
                f"found a JSON {type(record).__name__}"
            )
        records.append(record)
    return records


def _json_array_records(path: str, text: str) -> list[dict]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f'{path}: a JSON array must hold only objects such as {{"prompt": "..."}}')
    return records


def _records_to_table(path: str, records: list[dict]) -> pa.Table:
    columns = list(dict.fromkeys(key for record in records for key in record))
    arrays = {}
    for column in columns:
        try:
            arrays[column] = pa.array([record.get(column) for record in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise InputError(
                f"{path}: column {column!r} mixes value types across lines ({error}); use one type per column"
            ) from None
    return pa.table(arrays) if arrays else pa.table({})


def _read_parquet(path: str) -> pa.Table:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such Parquet file")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{path}: cannot read it as Parquet ({error})") from None


def _read_datasets_folder(path: str) -> pa.Table:
    import datasets  # imported here: it is slow to import and only this format needs it

    try:
        loaded = datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise InputError(f"{path}: not a folder written by datasets' save_to_disk ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            raise InputError(
                f"{path}: holds the splits {sorted(loaded)}; point the path at one split's folder, e.g. "
                f"{os.path.join(path, sorted(loaded)[0])}"
            )
        loaded = next(iter(loaded.values()))
    return loaded.with_format("arrow")[:]


def _prompts_table(
    raw: pa.Table, source: PromptSourceSection, path: str, tokenizer, apply_chat_template: bool, key_prefix: str
) -> pa.Table:
    if raw.num_rows == 0:
        raise InputError(f"{key_prefix}.path: no prompts in {path} (it has no rows); add prompts to it")
    prompt_column = _require_column(raw, source.prompt_column, f"{key_prefix}.prompt_column", path)
    id_column = source.id_column or ("prompt_id" if "prompt_id" in raw.column_names else None)
    if id_column is not None:
        _require_column(raw, id_column, f"{key_prefix}.id_column", path)
    conversations = None
    if is_conversation_type(raw.schema.field(prompt_column).type):
        prompts, conversations = conversation_prompts(raw.column(prompt_column), prompt_column, path)
    else:
        prompts = _prompt_strings(raw.column(prompt_column), prompt_column, path)
    ids = raw.column(id_column) if id_column is not None else pa.array([f"p{row}" for row in range(raw.num_rows)])
    passthrough = [c for c in raw.column_names if c not in (prompt_column, "prompt_id")]
    _check_column_names(passthrough, path, key_prefix)

    keep = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(prompts)), 0), False)
    table = pa.table({"prompt_id": ids, "prompt": prompts}).append_column(ROW_COLUMN, pa.array(range(raw.num_rows)))
    for column in passthrough:
        table = table.append_column(raw.schema.field(column), raw.column(column))
    table = table.filter(keep)
    if table.num_rows == 0:
        raise InputError(
            f"{key_prefix}.path: no prompts in {path} ({raw.num_rows} rows, none with a non-empty "
            f"{prompt_column!r}); add prompts or set {key_prefix}.prompt_column"
        )
    if table.num_rows < raw.num_rows:
        logger.warning("%s: skipped %d rows with an empty %r", path, raw.num_rows - table.num_rows, prompt_column)
    table = table.set_column(0, pa.field("prompt_id", pa.string()), _string_ids(table, id_column, path, key_prefix))
    if source.limit is not None:
        table = table.slice(0, source.limit)
    if conversations is None:
        texts = prompt_texts(table.column("prompt").to_pylist(), tokenizer, apply_chat_template)
    else:
        rows = table.column(ROW_COLUMN).to_pylist()
        texts = conversation_texts([conversations[row] for row in rows], tokenizer, apply_chat_template, rows, path)
    table = table.drop_columns([ROW_COLUMN]).add_column(
        2, pa.field("prompt_text", pa.string()), pa.array(texts, pa.string())
    )
    return table.combine_chunks()


def _require_column(raw: pa.Table, column: str, key: str, path: str) -> str:
    if column not in raw.column_names:
        raise InputError(
            f"{key}: column {column!r} is not in {path}; its columns are {raw.column_names}. Set {key} to one of them."
        )
    return column


def _prompt_strings(column: pa.ChunkedArray, name: str, path: str) -> pa.ChunkedArray:
    if pa.types.is_null(column.type):
        return column.cast(pa.string())  # every value null: reported as 'no prompts'
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"{path}: prompt column {name!r} holds {column.type}, not text; it must hold strings")
    return column.cast(pa.string())


def _check_column_names(columns: list[str], path: str, key_prefix: str) -> None:
    clashing = [c for c in columns
                if c in LOADER_WRITTEN_COLUMNS or is_pipeline_column(c) or c in BUILTIN_EXTRA_COLUMNS]
    if clashing:
        raise InputError(
            f"{path}: columns {clashing} have names the pipeline writes itself (prompt, prompt_text, rollout, "
            f"reward_* and built-in reward columns); rename them, or set {key_prefix}.prompt_column if one "
            "holds the prompt"
        )


def _string_ids(table: pa.Table, id_column: str | None, path: str, key_prefix: str) -> pa.Array:
    """Prompt ids as strings; null or repeated ids name the rows involved."""
    try:
        ids = table.column("prompt_id").cast(pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise InputError(
            f"{key_prefix}.id_column: {path} column {id_column!r} cannot be used as text ids ({error})"
        ) from None
    rows = table.column(ROW_COLUMN).to_pylist()
    first_row: dict[str, int] = {}
    for prompt_id, row in zip(ids, rows, strict=True):
        if prompt_id is None:
            raise InputError(f"{key_prefix}.id_column: {path} row {row + 1} has no {id_column!r} value")
        if prompt_id in first_row:
            raise InputError(
                f"{key_prefix}.id_column: {path} repeats the id {prompt_id!r} in column {id_column!r} "
                f"(rows {first_row[prompt_id] + 1} and {row + 1}); prompt ids must be unique"
            )
        first_row[prompt_id] = row
    return pa.array(ids, pa.string())
