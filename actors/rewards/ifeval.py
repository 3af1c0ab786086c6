"""The `ifeval` reward: does a response follow its prompt's verifiable instructions (IFEval)?

Each prompt carries IFEval's two columns (IFEVAL_PROMPT_COLUMNS in actors/rewards/ifeval_fields.py):
`instruction_id_list` (e.g. ["punctuation:no_comma", "length_constraints:number_words"]) and `kwargs`,
one keyword-argument object per instruction, either a JSON object string (the built-in set) or a
struct whose unused keys are null (IFEval's own files). Every instruction is checked by its checker
class from the `if-verifiable` package (`if_verifiable.ifeval.instructions_registry`), so a prompt
written by that checker's `build_description` and the check that scores it cannot disagree.

Per response (docs/ifeval.md): `reward_ifeval` is the fraction of its instructions followed, strictly;
the extra columns (IFEVAL_SCORE_FIELDS) hold IFEval's four measures (instruction/prompt level x
strict/loose) and per instruction whether it passed. Loose means the check passes on the response or
on one of its loose forms: first line, last line or both removed, and each of those with every `*`
removed. A row without instructions gets NaN (dropped and counted by the driver).

`check_ifeval_prompts` is the pre-flight: an unknown id, kwargs that do not fit their checker (an
unknown or missing key, a value the checker rejects or would silently replace with a random one),
or a checker that cannot run here (nltk data missing) is an InputError naming the file, the row and
the id, before any model loads. `ifeval_accuracies` sums a scored table into what the held-out
evaluation reports. The checker package is imported on first use: it takes seconds.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from actors.contracts import InputError, RewardOutput
from actors.rewards.ifeval_fields import (
    IFEVAL_ACCURACIES,
    IFEVAL_FAMILIES,
    IFEVAL_LOOSE_PASS,
    IFEVAL_PROMPT_COLUMNS,
    IFEVAL_SCORE_FIELDS,
    IFEVAL_STRICT_PASS,
)

IDS_COLUMN, KWARGS_COLUMN = IFEVAL_PROMPT_COLUMNS
FAMILY_SEPARATOR = ":"
# Texts every checker is run on once when it is built: a checker that raises on them (a kwargs value
# of the wrong type, nltk data that is not installed) would raise on responses too.
_PROBES = ("A short probe. It has two sentences, a comma and a [placeholder].",
           "first line\n\n*second* paragraph\nP.S. the end")


class InstructionError(ValueError):
    """One instruction cannot be checked as given; callers add the file and row to the message."""


# What IFEval's language checkers log (on the root logger, at ERROR) for a response langdetect cannot place,
# which IFEval's rule then counts as followed: not a failure, and a user reads ERROR lines as failures.
_UNDETECTED_LANGUAGE = "Unable to detect language for text"


def _not_undetected_language(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_UNDETECTED_LANGUAGE)


def quiet_language_detection() -> None:
    """Drop the checkers' undetected-language lines from the root logger (once per process); other records pass."""
    root = logging.getLogger()
    if _not_undetected_language not in root.filters:
        root.addFilter(_not_undetected_language)


@functools.lru_cache(maxsize=1)
def checker_classes() -> dict[str, type]:
    """IFEval's instruction ids and their checker classes (if-verifiable's registry)."""
    import langdetect
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    quiet_language_detection()

    # The case checkers ask langdetect, which samples: one seed makes a response score the same every time.
    langdetect.DetectorFactory.seed = 0
    return dict(INSTRUCTION_DICT)


@functools.lru_cache(maxsize=1)
def instruction_conflicts() -> dict[str, frozenset[str]]:
    """Per id, the ids it must not share a prompt with (IFEval's table, made symmetric; each id with itself)."""
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_CONFLICTS

    conflicts: dict[str, set[str]] = {key: {key, *others} for key, others in INSTRUCTION_CONFLICTS.items()}
    for key, others in list(conflicts.items()):
        for other in others:
            conflicts.setdefault(other, {other}).add(key)
    return {key: frozenset(others) for key, others in conflicts.items()}


def family(instruction_id: str) -> str:
    """The constraint family: the part of the id before ':' (e.g. 'detectable_format')."""
    return instruction_id.split(FAMILY_SEPARATOR, 1)[0]


def parse_kwargs(value: Any) -> dict:
    """One instruction's kwargs as a dict without null values, from a JSON object string, a dict (an
    Arrow struct, unused keys null), a list of (key, value) pairs (an Arrow map) or null."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as error:
            raise InstructionError(f"kwargs {value!r} are not valid JSON ({error.msg})") from None
    if isinstance(value, list) and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        value = dict(value)
    if not isinstance(value, dict):
        raise InstructionError(f"kwargs must be an object of keyword arguments, not {value!r}")
    return {key: item for key, item in value.items() if item is not None}


def _folded(value: Any) -> Any:
    """A kwargs value as the checkers normalise it: strings stripped and lower-cased, lists as sets."""
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, (list, tuple)):
        return sorted({str(item).strip().lower() for item in value})
    return value


def build_checker(instruction_id: str, kwargs: dict):
    """The checker of one instruction, built with `kwargs` and run once on probe texts."""
    return _cached_checker(instruction_id, json.dumps(kwargs, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _cached_checker(instruction_id: str, kwargs_json: str):
    classes = checker_classes()
    if instruction_id not in classes:
        raise InstructionError(f"{instruction_id!r} is not an IFEval instruction id; known ids: {', '.join(sorted(classes))}")
    kwargs = json.loads(kwargs_json)
    checker = classes[instruction_id](instruction_id)
    keys = list(checker.get_instruction_args_keys())
    takes = ", ".join(keys) if keys else "no kwargs"
    unknown = sorted(set(kwargs) - set(keys))
    if unknown:
        raise InstructionError(f"{instruction_id!r} has kwargs {unknown} that its checker does not take ({takes})")
    missing = [key for key in keys if key not in kwargs]
    if missing:
        # The checker would draw them at random: the prompt would not say what is checked.
        raise InstructionError(f"{instruction_id!r} lacks kwargs {missing} (its checker takes {takes})")
    try:
        checker.build_description(**kwargs)
    except Exception as error:  # noqa: BLE001 - any failure here is the kwargs' fault; say which
        raise InstructionError(f"{instruction_id!r} rejects kwargs {kwargs} ({type(error).__name__}: {error})") from None
    used = checker.get_instruction_args() or {}
    replaced = [key for key in keys if _folded(kwargs[key]) != _folded(used.get(key))]
    if replaced:
        # Out-of-range values (a negative count, a paragraph past the last) are replaced by random ones.
        given = ", ".join(f"{k}={kwargs[k]!r}" for k in replaced)
        instead = ", ".join(f"{k}={used.get(k)!r}" for k in replaced)
        raise InstructionError(f"{instruction_id!r} kwargs out of range: {given} (its checker would use {instead})")
    for text in _PROBES:
        try:
            checker.check_following(text)
        except LookupError:
            raise InstructionError(f"{instruction_id!r} needs nltk tokenizer data that is not installed here "
                                   "(python -m nltk.downloader punkt_tab on every node), or leave it out") from None
        except Exception as error:  # noqa: BLE001 - a value the checker cannot use, found before any response
            raise InstructionError(f"{instruction_id!r} with kwargs {kwargs} fails when checking a response "
                                   f"({type(error).__name__}: {error})") from None
    return checker


def _kwargs_list(value: Any, count: int) -> list:
    if value is None:
        return [None] * count
    if isinstance(value, str):  # the whole list as one JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InstructionError(f"{KWARGS_COLUMN} {value!r} is not valid JSON ({error.msg})") from None
    if not isinstance(value, list):
        raise InstructionError(f"{KWARGS_COLUMN} must be a list with one object per instruction, not {value!r}")
    if len(value) != count:
        raise InstructionError(f"{count} instruction ids but {len(value)} {KWARGS_COLUMN} entries; give one per instruction")
    return value


def row_checkers(ids: Sequence[str] | None, kwargs: Any) -> list:
    """The built checkers of one prompt row (empty when it has no instructions)."""
    if not ids:
        return []
    if not all(isinstance(i, str) for i in ids):
        raise InstructionError(f"{IDS_COLUMN} must hold text ids, not {list(ids)!r}")
    entries = _kwargs_list(kwargs, len(ids))
    return [build_checker(iid, parse_kwargs(entry)) for iid, entry in zip(ids, entries, strict=True)]


def loose_variants(response: str) -> list[str]:
    """IFEval's loose forms: the response with its first, last, or first and last lines removed, then each
    of those (and the response) with every '*' removed; the response itself comes first."""
    lines = response.split("\n")
    trimmed = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return trimmed + [text.replace("*", "") for text in trimmed]


def follows(response: str, checkers: Sequence) -> tuple[list[bool], list[bool]]:
    """Per checker: strict (the response passes) and loose (any loose form passes); empty text never passes."""
    forms = [text for text in loose_variants(response)[1:] if text.strip()]
    strict = [bool(response.strip()) and bool(c.check_following(response)) for c in checkers]
    loose = [s or any(bool(c.check_following(text)) for text in forms) for s, c in zip(strict, checkers)]
    return strict, loose


def require_ifeval_columns(table: pa.Table, what: str) -> None:
    missing = [c for c in (*IFEVAL_PROMPT_COLUMNS, "response") if c not in table.column_names]
    if missing:
        raise InputError(f"the ifeval reward needs column(s) {missing} in {what} (columns present: "
                         f"{table.column_names}); use data.train.path: builtin-ifeval or prompts in IFEval's format")


def ifeval_reward(batch: pa.Table) -> RewardOutput:
    """The fraction of each row's instructions its `response` follows (strict), and the extra columns."""
    require_ifeval_columns(batch, "the scored batch")
    ids = batch.column(IDS_COLUMN).to_pylist()
    kwargs = batch.column(KWARGS_COLUMN).to_pylist()
    responses = batch.column("response").to_pylist()
    strict_lists, loose_lists = [], []
    for row, (row_ids, row_kwargs, response) in enumerate(zip(ids, kwargs, responses, strict=True)):
        try:
            checkers = row_checkers(row_ids, row_kwargs)
        except InstructionError as error:
            raise InputError(f"the ifeval reward, batch row {row + 1}: {error}") from None
        strict, loose = follows(response or "", checkers) if checkers else (None, None)
        strict_lists.append(strict)
        loose_lists.append(loose)
    measures = {
        "ifeval_instruction_strict": [_fraction(s) for s in strict_lists],
        "ifeval_instruction_loose": [_fraction(s) for s in loose_lists],
        "ifeval_prompt_strict": [_all(s) for s in strict_lists],
        "ifeval_prompt_loose": [_all(s) for s in loose_lists],
        IFEVAL_STRICT_PASS: strict_lists,
        IFEVAL_LOOSE_PASS: loose_lists,
    }
    columns = pa.Table.from_pydict(measures, schema=pa.schema(IFEVAL_SCORE_FIELDS))
    return RewardOutput(np.asarray(measures["ifeval_instruction_strict"], dtype=np.float64), columns)


def _fraction(passes: list[bool] | None) -> float:
    return float("nan") if not passes else sum(passes) / len(passes)


def _all(passes: list[bool] | None) -> float:
    return float("nan") if not passes else float(all(passes))


def check_ifeval_prompts(prompts: pa.Table, key: str, source: str) -> None:
    """InputError naming `source`, the row and the id when a prompt's instructions cannot be checked."""
    missing = [c for c in IFEVAL_PROMPT_COLUMNS if c not in prompts.column_names]
    if missing:
        raise InputError(f"{key} (programmatic 'ifeval') reads the column(s) {missing}, which {source} lacks "
                         f"(its columns: {prompts.column_names}); use builtin-ifeval or prompts in IFEval's format "
                         f"({', '.join(IFEVAL_PROMPT_COLUMNS)}; docs/ifeval.md)")
    kind = prompts.schema.field(IDS_COLUMN).type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
            pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)):
        raise InputError(f"{source}: column {IDS_COLUMN!r} holds {kind}; it must hold a list of instruction ids (text)")
    rows = zip(prompts.column("prompt_id").to_pylist(), prompts.column(IDS_COLUMN).to_pylist(),
               prompts.column(KWARGS_COLUMN).to_pylist())
    for row, (prompt_id, ids, kwargs) in enumerate(rows):
        where = f"{source}, row {row + 1} (prompt_id {prompt_id!r})"
        if not ids:
            raise InputError(f"{where}: {IDS_COLUMN} is empty; the ifeval reward has nothing to check")
        try:
            row_checkers(ids, kwargs)
        except InstructionError as error:
            raise InputError(f"{where}: {error}") from None


def ifeval_accuracies(scored: pa.Table) -> dict | None:
    """IFEval's four accuracies over the responses of `scored`, overall and per constraint family; None
    when the table has no ifeval columns. Instruction level counts instructions (micro average)."""
    if IFEVAL_STRICT_PASS not in scored.column_names:
        return None
    rows = [(ids, strict, loose) for ids, strict, loose in zip(
        scored.column(IDS_COLUMN).to_pylist(), scored.column(IFEVAL_STRICT_PASS).to_pylist(),
        scored.column(IFEVAL_LOOSE_PASS).to_pylist(), strict=True) if strict]
    per_family: dict[str, list[int]] = {}
    for ids, strict, loose in rows:
        for iid, s, lo in zip(ids, strict, loose, strict=True):
            counts = per_family.setdefault(family(iid), [0, 0, 0])
            counts[0], counts[1], counts[2] = counts[0] + 1, counts[1] + s, counts[2] + lo
    instructions = sum(counts[0] for counts in per_family.values())
    prompt_strict, instruction_strict, prompt_loose, instruction_loose = IFEVAL_ACCURACIES
    return {
        prompt_strict: ratio(sum(all(s) for _, s, _ in rows), len(rows)),
        instruction_strict: ratio(sum(c[1] for c in per_family.values()), instructions),
        prompt_loose: ratio(sum(all(lo) for _, _, lo in rows), len(rows)),
        instruction_loose: ratio(sum(c[2] for c in per_family.values()), instructions),
        "responses": len(rows),
        "instructions": instructions,
        IFEVAL_FAMILIES: {name: {instruction_strict: c[1] / c[0], instruction_loose: c[2] / c[0], "instructions": c[0]}
                          for name, c in sorted(per_family.items())},
    }


def ratio(part: float, whole: int) -> float | None:
    """part / whole; None (undefined, JSON null) for nothing to count."""
    return part / whole if whole else None
